//! openraft storage on redb: the Raft log and the lease state machine.
