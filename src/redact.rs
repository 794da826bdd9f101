//! Credentials kept out of what is printed or logged: a URL's password, and query parameters
//! that carry secrets, masked before the URL (or an error message that may echo it) reaches a
//! message. Everything that prints `broker.redis_url`, `store.url` or another configured URL
//! goes through here.

/// What a removed secret reads as.
const MASK: &str = "***";

/// Query parameters whose value is a secret when their name contains one of these
/// (`password`, `sslpassword`, `auth_token`, `secret`, `api_key`, …).
const SECRET_PARAMS: [&str; 5] = ["pass", "secret", "token", "key", "auth"];

/// `url` with its password and its secret query values replaced by `***`. The scheme, user
/// name, host, port, path and other parameters stay, so that a message still says where.
///
/// Never fails: a host never contains `@`, so everything between the user name and the last
/// `@` is masked, even when a password holds unencoded `@`, `/` or `?` (an `@` in the query
/// masks more than needed, never less).
pub fn redact_url(url: &str) -> String {
    let mut out = match password_span(url) {
        Some((start, end)) => format!("{}{MASK}{}", &url[..start], &url[end..]),
        None => url.to_string(),
    };
    if let Some(q) = out.find('?') {
        let query: Vec<String> = out[q + 1..]
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if secret_param(name) => format!("{name}={MASK}"),
                _ => param.to_string(),
            })
            .collect();
        out = format!("{}?{}", &out[..q], query.join("&"));
    }
    out
}

/// `text` (say, a library's error about `url`) with every secret of `url` masked, as written
/// in the URL and percent-decoded.
pub fn redact_secrets(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets(url) {
        for form in [percent_decoded(&secret), secret] {
            if !form.is_empty() {
                out = out.replace(&form, MASK);
            }
        }
    }
    out
}

/// Byte range of the password: from after the first `:` of the user info to its last `@`.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let at = start + url[start..].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    Some((colon + 1, at))
}

fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// The password and the secret query values, as written in `url`.
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some((start, end)) = password_span(url) {
        found.push(url[start..end].to_string());
    }
    if let Some((_, query)) = url.split_once('?') {
        for param in query.split('&') {
            if let Some((name, value)) = param.split_once('=') {
                if secret_param(name) {
                    found.push(value.to_string());
                }
            }
        }
    }
    found
}

/// `%XX` decoded (anything malformed is kept as it is).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        for (url, want) in [
            ("redis://:s3cret@127.0.0.1:1", "redis://:***@127.0.0.1:1"),
            (
                "rediss://default:s3cret@cache.example:6380/0",
                "rediss://default:***@cache.example:6380/0",
            ),
            (
                "postgres://app:p@ss/w?rd@db.example/sb?sslmode=require",
                "postgres://app:***@db.example/sb?sslmode=require",
            ),
            (
                "redis-cluster://u:pw@h1:7000?node=h2:7001&node=h3:7002",
                "redis-cluster://u:***@h1:7000?node=h2:7001&node=h3:7002",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/sb",
                "postgres://postgres@127.0.0.1:5432/sb",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "sqlite://switchboard.db?mode=rwc",
                "sqlite://switchboard.db?mode=rwc",
            ),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        assert_eq!(
            redact_url("postgres://db/sb?user=app&password=s3cret&sslmode=require"),
            "postgres://db/sb?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/sb?sslpassword=x&application_name=sb"),
            "postgres://db/sb?sslpassword=***&application_name=sb"
        );
    }

    #[test]
    fn an_at_sign_in_the_query_masks_more_never_less() {
        let out = redact_url("postgres://app:s3cret@db/sb?application_name=a@b");
        assert!(!out.contains("s3cret"), "{out}");
    }

    #[test]
    fn messages_lose_the_secrets_of_their_url() {
        let url = "redis://:s%40cret@127.0.0.1:1?auth_token=tok";
        let msg = "cannot connect to redis://:s%40cret@127.0.0.1:1 (password s@cret, token tok)";
        let out = redact_secrets(msg, url);
        assert!(
            !out.contains("s@cret") && !out.contains("s%40cret") && !out.contains("tok"),
            "{out}"
        );
        assert!(out.contains("127.0.0.1:1"), "{out}");
    }
}
