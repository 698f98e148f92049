//! Fault injection and load suite.
