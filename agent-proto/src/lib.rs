//! Wire types: generated protobuf messages and tonic services. No logic lives here.
