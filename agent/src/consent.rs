//! Headless owner consent: the agent requests the authorization URL itself. A redirect to our
//! callback is taken at once (servers that auto-approve); a consent page with a password form is
//! filled with the owner password (from `op read`, or the environment) and submitted. Anything
//! else needs a browser.

use std::time::Duration;

use url::Url;

use crate::store::Secret;

/// What lets the agent reach a local or private authorization server.
pub const LOCAL_SETTING: &str = "allow_local_oauth = true on the upstream";

/// Where the owner password comes from.
#[derive(Clone, Default)]
pub struct OwnerPassword {
    pub op_ref: Option<String>,
    pub direct: Option<String>,
}

impl OwnerPassword {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            op_ref: var("MCP_BRIDGE_OWNER_PASSWORD_OP_REF"),
            direct: var("MCP_BRIDGE_OWNER_PASSWORD"),
        }
    }

    /// Reads the password: `op read <ref>` (10 s timeout), else the env var. Never logged.
    pub async fn read(&self) -> Result<Option<Secret>, String> {
        if let Some(r) = &self.op_ref {
            // `op` gets the basics and its own `OP_*` session/service-account variables, never
            // the agent's (the owner password, the socket path).
            let op_vars: Vec<String> = std::env::vars()
                .map(|(k, _)| k)
                .filter(|k| k.starts_with("OP_"))
                .collect();
            let env = proto::childenv::child_env(std::env::vars(), &op_vars, &Default::default());
            let run = tokio::process::Command::new("op")
                .arg("read")
                .arg(r)
                .env_clear()
                .envs(env)
                .kill_on_drop(true)
                .output();
            return match tokio::time::timeout(Duration::from_secs(10), run).await {
                Ok(Ok(out)) if out.status.success() => {
                    let text = String::from_utf8_lossy(&out.stdout)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    Ok(Some(Secret::new(text)))
                }
                // op's stderr can echo the reference but never the secret; keep only the status.
                Ok(Ok(out)) => Err(format!("`op read` failed with {}", out.status)),
                Ok(Err(e)) => Err(format!("cannot run `op`: {e}")),
                Err(_) => Err("`op read` did not answer within 10 s".into()),
            };
        }
        Ok(self.direct.clone().map(Secret::new))
    }
}

/// The result of a headless attempt.
pub enum Outcome {
    /// The server redirected to our callback: code (or error) and state from it.
    Redirected {
        code: Option<String>,
        state: Option<String>,
        iss: Option<String>,
        error: Option<String>,
    },
    /// Nothing we can answer without a person.
    NeedsBrowser(String),
}

/// A form on a consent page: its action, method and `(type, name, value)` inputs.
#[derive(Debug, PartialEq)]
pub struct HtmlForm {
    pub action: String,
    pub method: String,
    pub fields: Vec<(String, String, String)>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        let before = lower[..at].chars().last();
        let rest = &tag[at + name.len()..];
        if before.is_some_and(char::is_whitespace) && rest.trim_start().starts_with('=') {
            let v = rest.trim_start()[1..].trim_start();
            let (q, body) = match v.chars().next() {
                Some(c @ ('"' | '\'')) => (Some(c), &v[1..]),
                _ => (None, v),
            };
            let end = match q {
                Some(c) => body.find(c).unwrap_or(body.len()),
                None => body
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .unwrap_or(body.len()),
            };
            return Some(html_unescape(&body[..end]));
        }
        from = at + name.len();
    }
    None
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Finds the first form that has a password field.
pub fn find_password_form(html: &str) -> Option<HtmlForm> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("<form") {
        let start = from + i;
        let end = lower[start..]
            .find("</form")
            .map(|e| start + e)
            .unwrap_or(html.len());
        // A `>` past the form's end means a broken opening tag: the form ends there too.
        let tag_end = lower[start..end].find('>').map_or(end, |e| start + e);
        let open = &html[start..tag_end];
        let mut fields = Vec::new();
        let mut pos = tag_end;
        while let Some(j) = lower[pos..end].find("<input") {
            let s = pos + j;
            let e = lower[s..end].find('>').map(|x| s + x).unwrap_or(end);
            let tag = &html[s..e];
            let kind = attr(tag, "type")
                .unwrap_or_else(|| "text".into())
                .to_ascii_lowercase();
            if let Some(name) = attr(tag, "name") {
                fields.push((kind, name, attr(tag, "value").unwrap_or_default()));
            }
            pos = e;
        }
        if fields.iter().any(|(k, _, _)| k == "password") {
            return Some(HtmlForm {
                action: attr(open, "action").unwrap_or_default(),
                method: attr(open, "method")
                    .unwrap_or_else(|| "get".into())
                    .to_ascii_lowercase(),
                fields,
            });
        }
        from = end.max(start + 5);
    }
    None
}

/// What a redirect to `location` means when it goes to our `redirect_uri`; `None` when it
/// goes anywhere else.
pub fn redirect_outcome(location: &str, redirect_uri: &str) -> Option<Outcome> {
    if !location.starts_with(redirect_uri) {
        return None;
    }
    let url = Url::parse(location).ok()?;
    let get = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    Some(Outcome::Redirected {
        code: get("code"),
        state: get("state"),
        iss: get("iss"),
        error: get("error"),
    })
}

/// Tries to obtain consent without a person. Follows at most a few same-site redirects.
pub async fn headless(
    http: &reqwest::Client,
    authorization_url: &str,
    redirect_uri: &str,
    password: &OwnerPassword,
    allow_local: bool,
) -> Result<Outcome, String> {
    let mut url = Url::parse(authorization_url).map_err(|e| e.to_string())?;
    for _ in 0..5 {
        proto::netguard::check_url(url.as_str(), allow_local, LOCAL_SETTING).await?;
        let resp = http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status().is_redirection() {
            let loc = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or("redirect without Location")?;
            let next = url.join(loc).map_err(|e| e.to_string())?;
            if let Some(o) = redirect_outcome(next.as_str(), redirect_uri) {
                return Ok(o);
            }
            url = next;
            continue;
        }
        let html = resp.text().await.map_err(|e| e.to_string())?;
        let Some(form) = find_password_form(&html) else {
            return Ok(Outcome::NeedsBrowser(
                "the consent page is not a password form".into(),
            ));
        };
        let Some(pw) = password.read().await? else {
            return Ok(Outcome::NeedsBrowser("the consent page asks for the owner password, and neither MCP_BRIDGE_OWNER_PASSWORD_OP_REF nor MCP_BRIDGE_OWNER_PASSWORD is set".into()));
        };
        let pairs: Vec<(String, String)> = form
            .fields
            .iter()
            .filter(|(k, _, _)| k != "submit")
            .map(|(k, n, v)| {
                (
                    n.clone(),
                    if k == "password" {
                        pw.expose().to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        let target = url.join(&form.action).map_err(|e| e.to_string())?;
        // The owner password goes only back to the server that showed the form.
        if target.origin() != url.origin() {
            return Ok(Outcome::NeedsBrowser(format!(
                "the consent form posts to another origin ({}); not sending the owner password there",
                target.origin().ascii_serialization()
            )));
        }
        let resp = if form.method == "post" {
            http.post(target).form(&pairs).send().await
        } else {
            let mut target = target;
            target.query_pairs_mut().extend_pairs(&pairs);
            http.get(target).send().await
        }
        .map_err(|e| format!("submitting consent: {e}"))?;
        if resp.status().is_redirection() {
            let loc = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let next = url.join(loc).map_err(|e| e.to_string())?;
            if let Some(o) = redirect_outcome(next.as_str(), redirect_uri) {
                return Ok(o);
            }
        }
        return Err(format!(
            "the consent form was refused (HTTP {}); check the owner password",
            resp.status()
        ));
    }
    Ok(Outcome::NeedsBrowser("too many redirects".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_password_form() {
        let html = r#"<html><form action="/search"><input name="q"></form>
            <FORM method="POST" action='/authorize?x=1&amp;y=2'><input type="hidden" name="state" value="s&quot;1">
            <input type=password name=pw><input type="submit" value="Allow"></FORM></html>"#;
        let f = find_password_form(html).unwrap();
        assert_eq!(f.action, "/authorize?x=1&y=2");
        assert_eq!(f.method, "post");
        assert_eq!(
            f.fields[0],
            ("hidden".into(), "state".into(), "s\"1".into())
        );
        assert_eq!(f.fields[1], ("password".into(), "pw".into(), "".into()));
        assert!(find_password_form("<form><input name=a></form>").is_none());
        assert!(find_password_form("<form <input").is_none());
    }
}
