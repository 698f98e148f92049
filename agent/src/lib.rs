//! The endpoint agent.
