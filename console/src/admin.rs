//! `lr admin`: what each administration command does and how its answer is shown. JSON output is
//! the broker's object or list as sent; tables show the same objects flattened for people: a
//! tenant's settings beside its id, roles as `responder-advanced (groups servers, dbs)`, a
//! group's rules as `hostname web-*`, lists of names joined with commas.
//!
//! A new token is printed once, alone on stdout (so `token=$(lr admin token create ...)` works),
//! with a line on stderr saying it will not be shown again. A new enrolment token is printed once
//! too, with what it allows and the `lr-agent enroll` line to paste on a device (the broker's
//! agent endpoint is not known to the console, so that line holds a placeholder for it).
//! Enrolment tokens and enrolled devices are listed with the columns an admin decides by.

use api_model::{
    CreateEnrolmentToken, CreateTenant, CreateToken, CreateUser, CreatedEnrolmentToken,
    CreatedToken, DeviceGroup, EnrolledDevice, EnrolmentToken, ErrorCode, GroupRule, UpdateTenant,
    UpdateUser,
};

use crate::api::{ApiError, Client, List, Typed};
use crate::app::{print_doc, print_done, print_rows, print_text};
use crate::cli::{
    AdminCommand, DeviceCommand, EnrolmentCommand, GroupCommand, SettingsArgs, SettingsCommand,
    TenantCommand, TokenCommand, UserCommand,
};
use crate::doc::Doc;
use crate::exit::{Exit, Failure};
use crate::render::Format;

/// Runs one `lr admin` command and prints its answer.
pub async fn run(
    api: &Client,
    command: AdminCommand,
    format: Format,
    width: Option<u16>,
) -> Result<Exit, Failure> {
    let out = Out { format, width };
    match command {
        AdminCommand::Tenant(command) => tenant(api, command, out).await,
        AdminCommand::Settings(SettingsCommand::Show) => {
            out.object(&api.settings().await.map_err(Kind::Settings.failure())?)
        }
        AdminCommand::Settings(SettingsCommand::Update { settings }) => {
            let update = update_of(&settings);
            let tenant = api
                .update_settings(&update)
                .await
                .map_err(Kind::Settings.failure())?;
            out.object(&tenant)
        }
        AdminCommand::User(command) => user(api, command, out).await,
        AdminCommand::Token(command) => token(api, command, out).await,
        AdminCommand::Group(command) => group(api, command, out).await,
        AdminCommand::Enrolment(command) => enrolment(api, command, out).await,
        AdminCommand::Device(command) => device(api, command, out).await,
    }
}

async fn tenant(api: &Client, command: TenantCommand, out: Out) -> Result<Exit, Failure> {
    let failure = Kind::Tenant.failure();
    match command {
        TenantCommand::List => out.list(&api.tenants().await.map_err(failure)?, "tenants"),
        TenantCommand::Show { id } => out.object(&api.tenant(&id).await.map_err(failure)?),
        TenantCommand::Create { id, name } => {
            let body = CreateTenant {
                id: id.clone(),
                display_name: name,
            };
            let tenant = api.create_tenant(&body).await.map_err(|e| {
                let hint = format!("lr admin tenant update {id} changes its name and settings");
                exists_hint(failure(e), hint)
            })?;
            out.object(&tenant)
        }
        TenantCommand::Update { id, settings } => {
            let update = update_of(&settings);
            out.object(&api.update_tenant(&id, &update).await.map_err(failure)?)
        }
        TenantCommand::Remove { id } => {
            api.remove_tenant(&id).await.map_err(failure)?;
            let sentence = format!("tenant {id} removed with its users, tokens and groups\n");
            out.done(("id", id), "removed", &sentence)
        }
    }
}

async fn user(api: &Client, command: UserCommand, out: Out) -> Result<Exit, Failure> {
    let failure = Kind::User.failure();
    match command {
        UserCommand::List => out.list(&api.users().await.map_err(failure)?, "users"),
        UserCommand::Show { name } => out.object(&api.user(&name).await.map_err(failure)?),
        UserCommand::Create { name, roles } => {
            let body = CreateUser {
                name: name.clone(),
                roles: roles.roles,
            };
            let user = api.create_user(&body).await.map_err(|e| {
                let hint = format!("lr admin user update {name} --role ... replaces its roles");
                exists_hint(failure(e), hint)
            })?;
            out.object(&user)
        }
        UserCommand::Update { name, roles } => {
            let body = UpdateUser { roles: roles.roles };
            out.object(&api.update_user(&name, &body).await.map_err(failure)?)
        }
        UserCommand::Remove { name } => {
            api.remove_user(&name).await.map_err(failure)?;
            let sentence = format!("user {name} removed with its tokens\n");
            out.done(("name", name), "removed", &sentence)
        }
    }
}

async fn token(api: &Client, command: TokenCommand, out: Out) -> Result<Exit, Failure> {
    let failure = Kind::Token.failure();
    match command {
        TokenCommand::List { user } => out.list(
            &api.tokens(user.as_deref()).await.map_err(failure)?,
            "tokens",
        ),
        TokenCommand::Create {
            user,
            description,
            expires_in,
        } => {
            let body = CreateToken {
                user,
                description,
                expires_in_secs: expires_in,
            };
            // A missing user is the user's absence, not the token's.
            let created = api
                .create_token(&body)
                .await
                .map_err(Kind::User.failure())?;
            let exit = print_text(&created_token_body(&created, out.format))?;
            crate::say!("{}", created_token_note(&created));
            Ok(exit)
        }
        TokenCommand::Revoke { id } => {
            let token = api.revoke_token(&id).await.map_err(failure)?;
            crate::say!(
                "lr: token {id} of {} revoked; every broker refuses it from now on",
                token.user
            );
            out.object(&token)
        }
    }
}

async fn group(api: &Client, command: GroupCommand, out: Out) -> Result<Exit, Failure> {
    let failure = Kind::Group.failure();
    match command {
        GroupCommand::List => out.list(&api.groups().await.map_err(failure)?, "groups"),
        GroupCommand::Show { name } => out.object(&api.group(&name).await.map_err(failure)?),
        GroupCommand::Set {
            name,
            devices,
            hostnames,
            device_globs,
            tags,
        } => {
            let rules = hostnames
                .into_iter()
                .map(GroupRule::Hostname)
                .chain(device_globs.into_iter().map(GroupRule::Device))
                .chain(tags.into_iter().map(GroupRule::Tag))
                .collect();
            let group = DeviceGroup {
                name,
                devices,
                rules,
            };
            out.object(&api.put_group(&group).await.map_err(failure)?)
        }
        GroupCommand::Remove { name } => {
            api.remove_group(&name).await.map_err(failure)?;
            let sentence = format!("group {name} removed\n");
            out.done(("name", name), "removed", &sentence)
        }
    }
}

async fn enrolment(api: &Client, command: EnrolmentCommand, out: Out) -> Result<Exit, Failure> {
    let failure = Kind::Enrolment.failure();
    match command {
        EnrolmentCommand::List => out.rows(
            &api.enrolment_tokens().await.map_err(failure)?,
            "enrolment tokens",
            enrolment_row,
        ),
        EnrolmentCommand::Create {
            expires_in,
            max_uses,
            group,
            description,
        } => {
            let body = CreateEnrolmentToken {
                description,
                expires_in_secs: expires_in,
                max_uses,
                group,
            };
            // A missing group is the group's absence, not the token's.
            let created =
                api.create_enrolment_token(&body)
                    .await
                    .map_err(|e| match body.group {
                        Some(_) => Kind::Group.failure()(e),
                        None => Failure::from(e),
                    })?;
            let exit = print_text(&created_enrolment_body(&created, out.format))?;
            crate::say!("{}", created_enrolment_note(&created));
            Ok(exit)
        }
        EnrolmentCommand::Revoke { id } => {
            let token = api.revoke_enrolment_token(&id).await.map_err(failure)?;
            crate::say!(
                "lr: enrolment token {id} of tenant {} revoked; no device can enrol with it from \
                 now on (devices it enrolled stay enrolled)",
                token.tenant
            );
            out.object(&token)
        }
    }
}

async fn device(api: &Client, command: DeviceCommand, out: Out) -> Result<Exit, Failure> {
    let failure = Kind::Enrolled.failure();
    match command {
        DeviceCommand::List => out.rows(
            &api.enrolled_devices().await.map_err(failure)?,
            "devices",
            device_row,
        ),
        DeviceCommand::Show { id } => out.object(&api.enrolled_device(&id).await.map_err(failure)?),
        DeviceCommand::Revoke { id } => {
            let device = api.revoke_device(&id).await.map_err(failure)?;
            crate::say!(
                "lr: device {id} of tenant {} revoked: its stream is dropped and its sessions end; \
                 it cannot connect until `lr admin device allow-reenrolment {id}` and a new \
                 enrolment",
                device.tenant
            );
            out.object(&device)
        }
        DeviceCommand::AllowReenrolment { id } => {
            let device = api.allow_reenrolment(&id).await.map_err(failure)?;
            crate::say!(
                "lr: device {id} of tenant {} may enrol once more, with a token from `lr admin \
                 enrolment create`",
                device.tenant
            );
            out.object(&device)
        }
        DeviceCommand::Groups { id } => {
            let groups = api
                .device_groups(&id)
                .await
                .map_err(Kind::Device.failure())?;
            out.object(&groups)
        }
    }
}

/// The change `tenant update` or `settings update` asks for.
pub fn update_of(args: &SettingsArgs) -> UpdateTenant {
    UpdateTenant {
        display_name: args.name.clone(),
        live_response_enabled: args.live_response.map(|s| s.on()),
        unsigned_scripts_allowed: args.unsigned_scripts.map(|s| s.on()),
        idle_timeout_ms: args.idle_timeout.map(|secs| secs * 1000),
        remediation_groups: args.remediation_groups.clone().map(|g| g.0),
        max_sessions_per_tenant: args.max_sessions,
        max_sessions_per_user: args.max_sessions_per_user,
    }
}

/// What a new token prints on stdout: the token alone as text, the whole object as JSON.
pub fn created_token_body(created: &Typed<CreatedToken>, format: Format) -> String {
    match format {
        Format::Json => crate::render::json(&created.doc),
        Format::Table => format!("{}\n", created.token),
    }
}

/// The line on stderr beside a new token.
pub fn created_token_note(created: &Typed<CreatedToken>) -> String {
    let token = &created.record;
    let expires = token
        .expires_at
        .map(|at| format!(", expires {at}"))
        .unwrap_or_default();
    format!(
        "lr: token {} for {} (tenant {}{expires}) created; store it now: it will not be shown again",
        token.id, token.user, token.tenant
    )
}

/// Where the agent's `--broker` goes in the enroll line: brokers listen for agents on an address
/// of their own, which the API does not tell.
pub const AGENT_ENDPOINT_PLACEHOLDER: &str = "<broker-agent-endpoint>";

/// What a new enrolment token prints on stdout: as a table, what it allows and the line to run
/// on a device; as JSON, the whole object.
pub fn created_enrolment_body(created: &Typed<CreatedEnrolmentToken>, format: Format) -> String {
    if format == Format::Json {
        return crate::render::json(&created.doc);
    }
    let record = &created.record;
    let fields = [
        ("token", created.token.clone()),
        ("id", record.id.clone()),
        ("tenant", record.tenant.clone()),
        ("expires", record.expires_at.to_string()),
        ("uses", uses(record)),
        (
            "group",
            record.group.as_deref().unwrap_or("(none)").to_owned(),
        ),
    ];
    let mut text = String::new();
    for (key, value) in fields {
        text.push_str(&format!("{:<8} {value}\n", format!("{key}:")));
    }
    text.push_str(&format!(
        "\nTo enrol a device, run this on it, with {AGENT_ENDPOINT_PLACEHOLDER} replaced by\n\
         the HOST:PORT where the brokers accept agents:\n{}\n",
        enroll_line(created)
    ));
    text
}

/// `lr-agent enroll ...` for a new enrolment token, ready to paste but for the broker's address.
pub fn enroll_line(created: &CreatedEnrolmentToken) -> String {
    format!(
        "lr-agent enroll --broker {AGENT_ENDPOINT_PLACEHOLDER} --token {} --ca-fingerprint {}",
        shell_word(&created.token),
        shell_word(&created.ca_fingerprint)
    )
}

/// The line on stderr beside a new enrolment token.
pub fn created_enrolment_note(created: &Typed<CreatedEnrolmentToken>) -> String {
    let token = &created.record;
    format!(
        "lr: enrolment token {} (tenant {}, expires {}) created; store it now: it will not be \
         shown again",
        token.id, token.tenant, token.expires_at
    )
}

/// A row of `lr admin enrolment list`.
fn enrolment_row(token: &Typed<EnrolmentToken>) -> Doc {
    let mut row = pick(&token.doc, &["id", "description", "group"]);
    row.push(("uses/max".to_owned(), Doc::String(uses(token))));
    row.extend(pick(&token.doc, &["expires_at", "revoked_at"]));
    Doc::Object(row)
}

/// A row of `lr admin device list`.
fn device_row(device: &Typed<EnrolledDevice>) -> Doc {
    Doc::Object(pick(
        &device.doc,
        &[
            "device",
            "state",
            "certificate_expires_at",
            "last_seen",
            "online",
            "hostname",
            "reenrolment_allowed",
        ],
    ))
}

/// These fields of an object, in this order, as the broker sent them (null when absent).
fn pick(doc: &Doc, keys: &[&str]) -> Vec<(String, Doc)> {
    keys.iter()
        .map(|key| ((*key).to_owned(), doc.get(key).cloned().unwrap_or_default()))
        .collect()
}

/// `2/20`: devices enrolled with a token, of those it allows.
fn uses(token: &EnrolmentToken) -> String {
    format!("{}/{}", token.uses, token.max_uses)
}

/// `text` as one shell word: as it is when it holds nothing a shell reads, else single-quoted.
/// The token and fingerprint come from the broker and end up pasted into a shell.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/=+@%,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// What an admin command's error is about, for the hint of a 404.
#[derive(Clone, Copy)]
enum Kind {
    Tenant,
    Settings,
    User,
    Token,
    Group,
    Enrolment,
    /// A device as `lr devices` knows it.
    Device,
    /// A device as enrolment knows it.
    Enrolled,
}

impl Kind {
    /// Turns an API error into what the user sees; a 404's hint names the list to look in.
    fn failure(self) -> impl Fn(ApiError) -> Failure {
        move |e| {
            let not_found = e.code() == Some(ErrorCode::NotFound);
            let mut failure = Failure::from(e);
            if not_found {
                failure.hints = vec![
                    match self {
                        Kind::Tenant => "lr admin tenant list shows the tenants",
                        Kind::Settings => {
                            "check --tenant (LR_TENANT); lr admin tenant list shows the tenants"
                        }
                        Kind::User => "lr admin user list shows the tenant's users",
                        Kind::Token => "lr admin token list shows the tenant's tokens",
                        Kind::Group => "lr admin group list shows the tenant's device groups",
                        Kind::Enrolment => {
                            "lr admin enrolment list shows the tenant's enrolment tokens"
                        }
                        Kind::Device => "lr devices lists the tenant's devices",
                        Kind::Enrolled => {
                            "lr admin device list shows the tenant's enrolled devices"
                        }
                    }
                    .to_owned(),
                ];
            }
            failure
        }
    }
}

/// For a create refused because the object exists: what to do instead.
fn exists_hint(failure: Failure, hint: String) -> Failure {
    if failure.api_code == Some(ErrorCode::AlreadyExists) {
        failure.hint(hint)
    } else {
        failure
    }
}

/// Where and how answers are printed.
#[derive(Clone, Copy)]
struct Out {
    format: Format,
    width: Option<u16>,
}

impl Out {
    fn object<T>(self, object: &Typed<T>) -> Result<Exit, Failure> {
        print_doc(&self.view(&object.doc), self.format, self.width)
    }

    fn list<T>(self, list: &List<T>, what: &str) -> Result<Exit, Failure> {
        self.rows(list, what, |item| table_view(&item.doc))
    }

    /// A list: as the broker sent it in JSON, each item as `row` makes it in a table.
    fn rows<T>(
        self,
        list: &List<T>,
        what: &str,
        row: impl Fn(&Typed<T>) -> Doc,
    ) -> Result<Exit, Failure> {
        let doc = match self.format {
            Format::Json => list.doc(),
            Format::Table => Doc::Array(list.items.iter().map(row).collect()),
        };
        print_rows(&doc, list.cut, what, self.format, self.width)
    }

    fn done(self, id: (&str, String), done: &str, sentence: &str) -> Result<Exit, Failure> {
        print_done(self.format, self.width, id, done, sentence)
    }

    fn view(self, doc: &Doc) -> Doc {
        match self.format {
            Format::Json => doc.clone(),
            Format::Table => table_view(doc),
        }
    }
}

/// An admin object flattened for a table: the fields of `settings` in its place, role grants
/// and group rules as words, lists of names joined with commas (`(none)` when empty), an idle
/// timeout left to the brokers said so.
pub fn table_view(doc: &Doc) -> Doc {
    let Doc::Object(fields) = doc else {
        return doc.clone();
    };
    let mut flat = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("settings", Doc::Object(_)) => {
                if let Doc::Object(inner) = table_view(value) {
                    flat.extend(inner);
                }
            }
            ("idle_timeout_ms", Doc::Null) => {
                flat.push((key.clone(), Doc::String("(brokers' default)".to_owned())));
            }
            (_, Doc::Array(items)) => {
                let words: Vec<String> = items.iter().map(in_words).collect();
                let text = if words.is_empty() {
                    "(none)".to_owned()
                } else {
                    words.join(", ")
                };
                flat.push((key.clone(), Doc::String(text)));
            }
            _ => flat.push((key.clone(), value.clone())),
        }
    }
    Doc::Object(flat)
}

/// One item of a list as words: a role grant `role (groups a, b)`, a group rule `hostname web-*`,
/// a name as it is.
fn in_words(item: &Doc) -> String {
    let text = |key| item.get(key).and_then(Doc::as_str);
    if let Some(role) = text("role") {
        let groups: Vec<&str> = match item.get("groups") {
            Some(Doc::Array(groups)) => groups.iter().filter_map(Doc::as_str).collect(),
            _ => Vec::new(),
        };
        return if groups.is_empty() {
            role.to_owned()
        } else {
            format!("{role} (groups {})", groups.join(", "))
        };
    }
    if let (Some(kind), Some(pattern)) = (text("match"), text("pattern")) {
        return format!("{kind} {pattern}");
    }
    match item {
        Doc::String(s) => s.clone(),
        other => other.to_compact(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{GroupList, Switch};
    use crate::render;

    fn doc(json: &str) -> Doc {
        Doc::parse(json.as_bytes()).unwrap()
    }

    const TENANT: &str = r#"{"id":"acme","display_name":"ACME Corp","settings":{"live_response_enabled":true,"unsigned_scripts_allowed":false,"idle_timeout_ms":null,"remediation_groups":[],"max_sessions_per_tenant":25,"max_sessions_per_user":1,"version":3},"created_at":"2026-12-05T12:00:00Z"}"#;

    #[test]
    fn a_tenant_shows_its_settings_beside_its_id() {
        let view = table_view(&doc(TENANT));
        let keys: Vec<&str> = match &view {
            Doc::Object(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!("not an object"),
        };
        assert_eq!(
            keys,
            [
                "id",
                "display_name",
                "live_response_enabled",
                "unsigned_scripts_allowed",
                "idle_timeout_ms",
                "remediation_groups",
                "max_sessions_per_tenant",
                "max_sessions_per_user",
                "version",
                "created_at"
            ]
        );
        assert_eq!(
            view.get("remediation_groups").and_then(Doc::as_str),
            Some("(none)")
        );
        assert_eq!(
            view.get("idle_timeout_ms").and_then(Doc::as_str),
            Some("(brokers' default)")
        );
        insta::assert_snapshot!(render::text(&Doc::Array(vec![view]), Some(200)));
    }

    #[test]
    fn roles_and_rules_in_words() {
        let user = table_view(&doc(
            r#"{"tenant":"acme","name":"alice","roles":[{"role":"responder-basic"},{"role":"responder-advanced","groups":["servers","dbs"]}],"created_at":"2026-12-05T12:00:00Z"}"#,
        ));
        assert_eq!(
            user.get("roles").and_then(Doc::as_str),
            Some("responder-basic, responder-advanced (groups servers, dbs)")
        );
        let group = table_view(&doc(
            r#"{"name":"servers","devices":["db-01","db-02"],"rules":[{"match":"hostname","pattern":"web-*"},{"match":"device","pattern":"srv-??"}]}"#,
        ));
        assert_eq!(
            group.get("devices").and_then(Doc::as_str),
            Some("db-01, db-02")
        );
        assert_eq!(
            group.get("rules").and_then(Doc::as_str),
            Some("hostname web-*, device srv-??")
        );
        insta::assert_snapshot!(render::text(&group, Some(80)));
    }

    #[test]
    fn updates_carry_only_the_flags_given() {
        let update = update_of(&SettingsArgs {
            live_response: Some(Switch::Off),
            idle_timeout: Some(900),
            remediation_groups: Some(GroupList::default()),
            ..SettingsArgs::default()
        });
        assert_eq!(
            update,
            UpdateTenant {
                live_response_enabled: Some(false),
                idle_timeout_ms: Some(900_000),
                remediation_groups: Some(Vec::new()),
                ..UpdateTenant::default()
            }
        );
        assert_eq!(
            serde_json::to_value(&update).unwrap()["display_name"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn a_new_token_is_printed_alone_or_as_the_object() {
        let created = Typed::<CreatedToken>::from_doc(doc(
            r#"{"token":"lrt_0123_secret","id":"0123","tenant":"demo","user":"analyst-a","description":"","created_at":"2026-12-05T12:00:00Z","expires_at":null,"revoked_at":null,"last_used_at":null}"#,
        ))
        .unwrap();
        assert_eq!(
            created_token_body(&created, Format::Table),
            "lrt_0123_secret\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&created_token_body(&created, Format::Json)).unwrap();
        assert_eq!(json["token"], "lrt_0123_secret");
        assert_eq!(json["user"], "analyst-a");
        let note = created_token_note(&created);
        assert!(!note.contains("lrt_0123_secret"), "{note}");
        assert_eq!(
            note,
            "lr: token 0123 for analyst-a (tenant demo) created; store it now: it will not be \
             shown again"
        );
    }

    const CREATED_ENROLMENT: &str = r#"{"token":"lre_0123_secret","ca_fingerprint":"5e0f3c","issuing_ca_fingerprint":"abab","id":"0123","tenant":"demo","description":"web farm","group":"servers","max_uses":20,"uses":0,"created_by":"admin-a","created_at":"2026-12-05T12:00:00Z","expires_at":"2026-12-06T12:00:00Z","revoked_at":null}"#;

    #[test]
    fn a_new_enrolment_token_comes_with_its_enroll_line() {
        let created = Typed::<CreatedEnrolmentToken>::from_doc(doc(CREATED_ENROLMENT)).unwrap();
        let body = created_enrolment_body(&created, Format::Table);
        assert_eq!(
            body.lines().last(),
            Some(
                "lr-agent enroll --broker <broker-agent-endpoint> --token lre_0123_secret \
                 --ca-fingerprint 5e0f3c"
            )
        );
        insta::assert_snapshot!(body);

        let json: serde_json::Value =
            serde_json::from_str(&created_enrolment_body(&created, Format::Json)).unwrap();
        assert_eq!(json["token"], "lre_0123_secret");
        assert_eq!(json["issuing_ca_fingerprint"], "abab");
        let note = created_enrolment_note(&created);
        assert!(!note.contains("lre_0123_secret"), "{note}");
        assert_eq!(
            note,
            "lr: enrolment token 0123 (tenant demo, expires 2026-12-06T12:00:00Z) created; store \
             it now: it will not be shown again"
        );
    }

    #[test]
    fn what_the_broker_sends_is_pasted_as_one_shell_word() {
        assert_eq!(shell_word("lre_0123_Secret-9"), "lre_0123_Secret-9");
        assert_eq!(shell_word("ab:cd"), "ab:cd");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("a b;rm -rf /"), "'a b;rm -rf /'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn enrolment_tokens_and_devices_as_rows() {
        let token = Typed::<EnrolmentToken>::from_doc(doc(
            r#"{"id":"0123","tenant":"demo","description":"web farm","group":null,"max_uses":20,"uses":3,"created_by":"admin-a","created_at":"2026-12-05T12:00:00Z","expires_at":"2026-12-06T12:00:00Z","revoked_at":"2026-12-05T13:00:00Z"}"#,
        ))
        .unwrap();
        let device = Typed::<EnrolledDevice>::from_doc(doc(
            r#"{"device":"web-07","tenant":"demo","state":"enrolled","certificate":"c0ffee","certificate_expires_at":"2026-12-12T12:00:00Z","enrolled_at":"2026-12-05T12:00:00Z","renewed_at":null,"revoked_at":null,"reenrolment_allowed":false,"online":true,"last_seen":"2026-12-05T12:30:00Z","hostname":"web-07.example"}"#,
        ))
        .unwrap();
        insta::assert_snapshot!(
            "enrolment_rows",
            render::text(&Doc::Array(vec![enrolment_row(&token)]), Some(120))
        );
        insta::assert_snapshot!(
            "device_rows",
            render::text(&Doc::Array(vec![device_row(&device)]), Some(120))
        );
    }
}
