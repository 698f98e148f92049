//! The administration endpoints (`/api/v1/admin/...`): tenants, the caller's tenant's settings,
//! users, tokens, device groups, enrolment tokens and enrolled devices. Writes are sent once, never retried: a token minted by a
//! first attempt whose answer was lost could not be shown, and a repeated create would be
//! refused as existing.

use api_model::{
    CreateEnrolmentToken, CreateTenant, CreateToken, CreateUser, CreatedEnrolmentToken,
    CreatedToken, DeviceGroup, EnrolledDevice, EnrolmentToken, Tenant, Token, UpdateTenant,
    UpdateUser, User,
};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{ApiError, Client, List, Object, REQUEST_TIMEOUT, Typed};

/// `GET /api/v1/admin/devices/{id}/groups`: the groups a device is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGroups {
    pub device: String,
    pub groups: Vec<String>,
}

impl Object for Tenant {
    const WHAT: &'static str = "tenant";
}
impl Object for User {
    const WHAT: &'static str = "user";
}
impl Object for Token {
    const WHAT: &'static str = "token";
}
impl Object for CreatedToken {
    const WHAT: &'static str = "created token";
}
impl Object for DeviceGroup {
    const WHAT: &'static str = "device group";
}
impl Object for DeviceGroups {
    const WHAT: &'static str = "device groups";
}
impl Object for EnrolmentToken {
    const WHAT: &'static str = "enrolment token";
}
impl Object for CreatedEnrolmentToken {
    const WHAT: &'static str = "created enrolment token";
}
impl Object for EnrolledDevice {
    const WHAT: &'static str = "enrolled device";
}

/// `GET /api/v1/admin/tokens` filter.
#[derive(Serialize)]
struct TokenFilter<'a> {
    user: Option<&'a str>,
}

impl Client {
    /// `GET /api/v1/admin/tenants`, every page.
    pub async fn tenants(&self) -> Result<List<Tenant>, ApiError> {
        self.list(&["admin", "tenants"], &()).await
    }

    /// `GET /api/v1/admin/tenants/{id}`
    pub async fn tenant(&self, id: &str) -> Result<Typed<Tenant>, ApiError> {
        self.get(&["admin", "tenants", id]).await?.typed()
    }

    /// `POST /api/v1/admin/tenants` → 201
    pub async fn create_tenant(&self, body: &CreateTenant) -> Result<Typed<Tenant>, ApiError> {
        self.write(
            Method::POST,
            &["admin", "tenants"],
            body,
            StatusCode::CREATED,
        )
        .await
    }

    /// `PATCH /api/v1/admin/tenants/{id}`
    pub async fn update_tenant(
        &self,
        id: &str,
        body: &UpdateTenant,
    ) -> Result<Typed<Tenant>, ApiError> {
        self.write(
            Method::PATCH,
            &["admin", "tenants", id],
            body,
            StatusCode::OK,
        )
        .await
    }

    /// `DELETE /api/v1/admin/tenants/{id}` → 204
    pub async fn remove_tenant(&self, id: &str) -> Result<(), ApiError> {
        self.delete(&["admin", "tenants", id]).await
    }

    /// `GET /api/v1/admin/settings`: the caller's tenant.
    pub async fn settings(&self) -> Result<Typed<Tenant>, ApiError> {
        self.get(&["admin", "settings"]).await?.typed()
    }

    /// `PATCH /api/v1/admin/settings`
    pub async fn update_settings(&self, body: &UpdateTenant) -> Result<Typed<Tenant>, ApiError> {
        self.write(Method::PATCH, &["admin", "settings"], body, StatusCode::OK)
            .await
    }

    /// `GET /api/v1/admin/users`, every page.
    pub async fn users(&self) -> Result<List<User>, ApiError> {
        self.list(&["admin", "users"], &()).await
    }

    /// `GET /api/v1/admin/users/{name}`
    pub async fn user(&self, name: &str) -> Result<Typed<User>, ApiError> {
        self.get(&["admin", "users", name]).await?.typed()
    }

    /// `POST /api/v1/admin/users` → 201
    pub async fn create_user(&self, body: &CreateUser) -> Result<Typed<User>, ApiError> {
        self.write(Method::POST, &["admin", "users"], body, StatusCode::CREATED)
            .await
    }

    /// `PATCH /api/v1/admin/users/{name}`: the user's roles, replaced.
    pub async fn update_user(
        &self,
        name: &str,
        body: &UpdateUser,
    ) -> Result<Typed<User>, ApiError> {
        self.write(
            Method::PATCH,
            &["admin", "users", name],
            body,
            StatusCode::OK,
        )
        .await
    }

    /// `DELETE /api/v1/admin/users/{name}` → 204
    pub async fn remove_user(&self, name: &str) -> Result<(), ApiError> {
        self.delete(&["admin", "users", name]).await
    }

    /// `GET /api/v1/admin/tokens[?user=<name>]`, every page.
    pub async fn tokens(&self, user: Option<&str>) -> Result<List<Token>, ApiError> {
        self.list(&["admin", "tokens"], &TokenFilter { user }).await
    }

    /// `POST /api/v1/admin/tokens` → 201 with the token, shown this once.
    pub async fn create_token(&self, body: &CreateToken) -> Result<Typed<CreatedToken>, ApiError> {
        self.write(
            Method::POST,
            &["admin", "tokens"],
            body,
            StatusCode::CREATED,
        )
        .await
    }

    /// `DELETE /api/v1/admin/tokens/{id}` → 200 with the token, revoked.
    pub async fn revoke_token(&self, id: &str) -> Result<Typed<Token>, ApiError> {
        self.act(Method::DELETE, &["admin", "tokens", id]).await
    }

    /// `GET /api/v1/admin/groups`, every page.
    pub async fn groups(&self) -> Result<List<DeviceGroup>, ApiError> {
        self.list(&["admin", "groups"], &()).await
    }

    /// `GET /api/v1/admin/groups/{name}`
    pub async fn group(&self, name: &str) -> Result<Typed<DeviceGroup>, ApiError> {
        self.get(&["admin", "groups", name]).await?.typed()
    }

    /// `PUT /api/v1/admin/groups/{name}`: creates or replaces the group.
    pub async fn put_group(&self, group: &DeviceGroup) -> Result<Typed<DeviceGroup>, ApiError> {
        self.write(
            Method::PUT,
            &["admin", "groups", &group.name],
            group,
            StatusCode::OK,
        )
        .await
    }

    /// `DELETE /api/v1/admin/groups/{name}` → 204
    pub async fn remove_group(&self, name: &str) -> Result<(), ApiError> {
        self.delete(&["admin", "groups", name]).await
    }

    /// `GET /api/v1/admin/devices/{id}/groups`
    pub async fn device_groups(&self, device: &str) -> Result<Typed<DeviceGroups>, ApiError> {
        self.get(&["admin", "devices", device, "groups"])
            .await?
            .typed()
    }

    /// `GET /api/v1/admin/enrolment-tokens`, every page.
    pub async fn enrolment_tokens(&self) -> Result<List<EnrolmentToken>, ApiError> {
        self.list(&["admin", "enrolment-tokens"], &()).await
    }

    /// `POST /api/v1/admin/enrolment-tokens` → 201 with the token, shown this once.
    pub async fn create_enrolment_token(
        &self,
        body: &CreateEnrolmentToken,
    ) -> Result<Typed<CreatedEnrolmentToken>, ApiError> {
        self.write(
            Method::POST,
            &["admin", "enrolment-tokens"],
            body,
            StatusCode::CREATED,
        )
        .await
    }

    /// `DELETE /api/v1/admin/enrolment-tokens/{id}` → 200 with the token, revoked.
    pub async fn revoke_enrolment_token(
        &self,
        id: &str,
    ) -> Result<Typed<EnrolmentToken>, ApiError> {
        self.act(Method::DELETE, &["admin", "enrolment-tokens", id])
            .await
    }

    /// `GET /api/v1/admin/devices`, every page: the tenant's enrolled devices.
    pub async fn enrolled_devices(&self) -> Result<List<EnrolledDevice>, ApiError> {
        self.list(&["admin", "devices"], &()).await
    }

    /// `GET /api/v1/admin/devices/{id}`
    pub async fn enrolled_device(&self, device: &str) -> Result<Typed<EnrolledDevice>, ApiError> {
        self.get(&["admin", "devices", device]).await?.typed()
    }

    /// `POST /api/v1/admin/devices/{id}/revoke` → 200 with the device, revoked.
    pub async fn revoke_device(&self, device: &str) -> Result<Typed<EnrolledDevice>, ApiError> {
        self.act(Method::POST, &["admin", "devices", device, "revoke"])
            .await
    }

    /// `POST /api/v1/admin/devices/{id}/allow-reenrolment` → 200 with the device.
    pub async fn allow_reenrolment(&self, device: &str) -> Result<Typed<EnrolledDevice>, ApiError> {
        self.act(
            Method::POST,
            &["admin", "devices", device, "allow-reenrolment"],
        )
        .await
    }

    /// One request without a body, answered with the object it changed.
    async fn act<T: Object>(
        &self,
        method: Method,
        segments: &[&str],
    ) -> Result<Typed<T>, ApiError> {
        self.call(
            method,
            self.api(segments),
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::OK],
        )
        .await?
        .typed()
    }

    /// One write with a JSON body, answered with the object written.
    async fn write<T: Object>(
        &self,
        method: Method,
        segments: &[&str],
        body: &impl Serialize,
        expected: StatusCode,
    ) -> Result<Typed<T>, ApiError> {
        let body = serde_json::to_value(body)
            .map_err(|e| ApiError::Setup(format!("cannot write the request: {e}")))?;
        self.call(
            method,
            self.api(segments),
            Some(body),
            REQUEST_TIMEOUT,
            &[expected],
        )
        .await?
        .typed()
    }

    /// `DELETE` of an object → 204.
    async fn delete(&self, segments: &[&str]) -> Result<(), ApiError> {
        self.call(
            Method::DELETE,
            self.api(segments),
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await
        .map(drop)
    }
}
