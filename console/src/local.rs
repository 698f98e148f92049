//! What the REPL's console-side commands show: `status <command id>` (one command of this
//! session), `whoami` (also `lr whoami`) and the switch of `trace`. Rendering only; the REPL
//! fetches and prints. (`jobs` is in [`crate::jobs`].)

use crate::api::{Command, Typed};
use crate::doc::Doc;
use crate::render::{self, Format};

/// `trace`, `trace on`, `trace off`: the new state of the request trace. Without a value the
/// switch flips.
pub fn trace_switch(current: bool, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(!current),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(_) => Err(format!(
            "trace takes on or off, not '{}'",
            value.unwrap_or_default()
        )),
    }
}

/// `whoami`: in JSON the object as the broker sent it; as a table `<user> (tenant <t>)`, then
/// `roles: <role>, <role> (groups a, b)`.
pub fn whoami_body(me: &Typed<api_model::Me>, format: Format) -> String {
    match format {
        Format::Json => render::json(&me.doc),
        Format::Table => {
            let roles = if me.roles.is_empty() {
                "none".to_owned()
            } else {
                me.roles.join(", ")
            };
            format!("{} (tenant {})\nroles: {roles}\n", me.user, me.tenant)
        }
    }
}

/// `status <id>`: in JSON the whole command object; as a table its fields (but the output) as
/// key and value, then its output.
pub fn status_body(command: &Command, format: Format, width: Option<u16>) -> String {
    if format == Format::Json {
        return render::json(&command.doc);
    }
    let fields = match &command.doc {
        Doc::Object(fields) => fields
            .iter()
            .filter(|(k, _)| k != "output")
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let mut out = render::text(&Doc::Object(fields), width);
    let output = render::text(command.output(), width);
    if !output.is_empty() {
        out.push('\n');
        out.push_str(&output);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Doc {
        Doc::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn trace_flips_or_follows_its_value() {
        assert_eq!(trace_switch(false, None), Ok(true));
        assert_eq!(trace_switch(true, None), Ok(false));
        assert_eq!(trace_switch(true, Some("ON")), Ok(true));
        assert_eq!(trace_switch(true, Some("off")), Ok(false));
        assert!(trace_switch(true, Some("loud")).is_err());
    }

    #[test]
    fn whoami_is_a_line_or_the_object() {
        let me = Typed::<api_model::Me>::from_doc(doc(
            r#"{"user":"alice@acme.example","tenant":"acme"}"#,
        ))
        .unwrap();
        assert_eq!(
            whoami_body(&me, Format::Table),
            "alice@acme.example (tenant acme)\nroles: none\n"
        );
        assert_eq!(
            whoami_body(&me, Format::Json),
            "{\n  \"user\": \"alice@acme.example\",\n  \"tenant\": \"acme\"\n}\n",
            "the broker's order"
        );
        let me = Typed::<api_model::Me>::from_doc(doc(
            r#"{"tenant":"acme","user":"alice","roles":["responder-basic","responder-advanced (groups servers, dbs)"],"commands":["dir"]}"#,
        ))
        .unwrap();
        assert_eq!(
            whoami_body(&me, Format::Table),
            "alice (tenant acme)\nroles: responder-basic, responder-advanced (groups servers, dbs)\n"
        );
    }

    #[test]
    fn status_shows_the_fields_then_the_output() {
        let command = Command::from_doc(doc(
            r#"{"command_id":"c-2","command_line":"dir","state":"completed","output":[{"name":"a.txt"}],"error":null}"#,
        ))
        .unwrap();
        let table = status_body(&command, Format::Table, None);
        let (fields, output) = table.split_once("\n\n").unwrap();
        assert!(
            fields.contains("command_line") && fields.contains("completed"),
            "{table}"
        );
        assert!(!fields.contains("output"), "{table}");
        assert!(output.contains("a.txt"), "{table}");
        let json: serde_json::Value =
            serde_json::from_str(&status_body(&command, Format::Json, None)).unwrap();
        assert_eq!(json["output"][0]["name"], "a.txt");
    }
}
