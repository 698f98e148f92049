//! Every request and response of the analyst API (`/api/v1`), as the broker sends them and the
//! console reads them. The OpenAPI document is generated from these types, so what is written here
//! is the contract: change a field and the document, the broker and the console change together.

mod admin;
mod audit;
mod error;
mod requests;
mod resources;
mod states;

pub use admin::{
    CreateEnrolmentToken, CreateTenant, CreateToken, CreateUser, CreatedEnrolmentToken,
    CreatedToken, DeviceGroup, EnrolledDevice, EnrolmentState, EnrolmentToken, GroupRule,
    RoleGrant, Tenant, TenantSettings, Token, UpdateTenant, UpdateUser, User,
};
pub use audit::{AuditEntry, AuditFilter, AuditKind, AuditVerification};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, Holder, Invariant};
pub use jiff::Timestamp;
pub use requests::{
    CommandFilter, DEFAULT_LIMIT, DeviceFilter, LibraryUpload, MAX_LIMIT, OpenSession, Page,
    Paging, RunCommand, SessionFilter, TransferFilter, Wait,
};
pub use resources::{
    Command, Device, Health, LibraryEntry, Me, Readiness, ReadinessCheck, Session, Transfer,
};
pub use states::{CommandState, TransferKind, TransferState};
