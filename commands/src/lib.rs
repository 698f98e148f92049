//! The live response commands as data: one table ([`TABLE`]) says every command's name, role,
//! platforms, parameters, flags, default output, timeout, help and examples, and one grammar
//! ([`parse`]) reads a command line against it. The broker validates with it, the console
//! completes and explains with it, the agent binds an implementation to each name.
//!
//! Adding a command is one entry in [`table`] and one implementation where it runs.
#![forbid(unsafe_code)]

mod grammar;
mod suggest;
mod table;

pub use grammar::{Invocation, ParseError, Redirect, parse, parse_args, quote};
pub use suggest::closest;
/// Field names of every device command's JSON output: top-level fields, and for lists of objects
/// the fields of their rows. The agent's tests check its real output against it.
pub const OUTPUT_SCHEMA: &str = include_str!("../output-schema.json");

pub use table::{
    BrokerCommand, Flag, Output, Param, ParamKind, Platform, Role, Runs, Spec, TABLE,
    TransferCommand, find,
};
