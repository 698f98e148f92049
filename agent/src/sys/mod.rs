//! Linux helpers the commands share: file metadata as text, user and group names, streaming hashes,
//! file magic and /proc parsing. No command logic and no protocol types live here.

pub mod hash;
pub mod magic;
pub mod meta;
pub mod procfs;
pub mod root;
pub mod users;
