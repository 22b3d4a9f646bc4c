//! Who is calling. Every frontend resolves its caller to an [`Identity`] in exactly one
//! place (HTTP: a middleware in the binary; Flight SQL and PostgreSQL wire: their
//! handshake), so token authentication and per-database roles can later be enforced
//! everywhere at once. Today every identity is allowed everything.

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials were presented.
    Anonymous,
    /// A bearer or `Token` credential (InfluxDB clients send `Authorization: Token …`).
    Token(String),
    /// HTTP Basic credentials (user name only; the password is not kept).
    User(String),
}

impl Identity {
    /// Resolves an HTTP `Authorization` header value.
    pub fn from_authorization(value: Option<&str>) -> Self {
        let Some(v) = value.map(str::trim) else {
            return Self::Anonymous;
        };
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "token" if !rest.is_empty() => Self::Token(rest.to_string()),
            "basic" if !rest.is_empty() => Self::User(basic_user(rest).unwrap_or_default()),
            _ => Self::Anonymous,
        }
    }
}

/// The user name of Basic credentials (`base64(user:password)`, padded or not).
fn basic_user(b64: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .ok()?;
    let s = String::from_utf8(bytes).ok()?;
    Some(s.split_once(':').map_or(s.as_str(), |(u, _)| u).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_common_schemes() {
        assert_eq!(Identity::from_authorization(None), Identity::Anonymous);
        assert_eq!(
            Identity::from_authorization(Some("Bearer abc")),
            Identity::Token("abc".into())
        );
        assert_eq!(
            Identity::from_authorization(Some("Token xyz")),
            Identity::Token("xyz".into())
        );
        // "alice:secret", padded and unpadded.
        assert_eq!(
            Identity::from_authorization(Some("Basic YWxpY2U6c2VjcmV0")),
            Identity::User("alice".into())
        );
        assert_eq!(
            Identity::from_authorization(Some("Basic YWxpY2U6c2VjcmV0==")),
            Identity::User("alice".into())
        );
        assert_eq!(
            Identity::from_authorization(Some("Negotiate x")),
            Identity::Anonymous
        );
    }
}
