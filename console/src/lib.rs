//! The analyst console.
