//! `POST /token`: the OAuth2 JWT-bearer grant (RFC 7523) as Google's token endpoint answers it.
//!
//! yup-oauth2 signs with base64url *with* padding and google-auth without; Google accepts both,
//! so segments are decoded padding-indifferently and the signature is checked over the two
//! first segments exactly as sent.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::json;

use crate::key::ServiceAccount;
use crate::state::{MockState, TOKEN_LIFETIME_SECS};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Either scope lets a token call `messages:send`.
const SEND_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
];
/// Google's limit on an assertion's lifetime (`exp - iat`).
const MAX_ASSERTION_LIFETIME_SECS: f64 = 3600.0;
/// How far in the future `iat` may be, for clock skew.
const MAX_CLOCK_SKEW_SECS: f64 = 300.0;
const BAD_TIMES: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
reasonable timeframe. Check your iat and exp values in the JWT claim.";

const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The form fields of a token request; others are ignored, as Google does.
#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    assertion: Option<String>,
}

/// A 400 of the token endpoint: `{"error":"...","error_description":"..."}`.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {description}")]
pub(crate) struct TokenError {
    /// OAuth2 error code (`invalid_grant`, `unsupported_grant_type`, `invalid_request`).
    error: &'static str,
    description: String,
}

impl TokenError {
    fn invalid_grant(description: impl Into<String>) -> Self {
        Self {
            error: "invalid_grant",
            description: description.into(),
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// The claims Google checks; `aud` is deliberately not checked (clients send various values).
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    scope: Option<String>,
    exp: Option<f64>,
    iat: Option<f64>,
}

pub(crate) async fn issue_token(
    State(state): State<Arc<MockState>>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Response, TokenError> {
    let Form(request) = form.map_err(|e| TokenError {
        error: "invalid_request",
        description: e.body_text(),
    })?;
    let grant_type = request.grant_type.unwrap_or_default();
    if grant_type != JWT_BEARER {
        return Err(TokenError {
            error: "unsupported_grant_type",
            description: format!("Invalid grant_type: {grant_type}"),
        });
    }
    let assertion = request.assertion.unwrap_or_default();
    if let Err(error) = verify_assertion(&state.account, &assertion, unix_now()) {
        tracing::debug!(%error, "token request rejected");
        return Err(error);
    }
    let body = json!({
        "access_token": state.issue_token(),
        "expires_in": TOKEN_LIFETIME_SECS,
        "token_type": "Bearer",
    });
    Ok(Json(body).into_response())
}

/// Checks an RS256 assertion as Google does: signature by the account's key, `iss`, times, scope.
fn verify_assertion(account: &ServiceAccount, assertion: &str, now: f64) -> Result<(), TokenError> {
    let mut parts = assertion.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::invalid_grant(
            "Invalid JWT: malformed assertion.",
        ));
    };
    let header: serde_json::Value = decode_segment(header)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
        return Err(TokenError::invalid_grant(
            "Invalid JWT: only RS256 is accepted.",
        ));
    }
    let claims: Claims = decode_segment(payload)?;
    if claims.iss.as_deref() != Some(account.client_email.as_str()) {
        return Err(TokenError::invalid_grant(
            "Invalid grant: account not found",
        ));
    }
    let signed_len = assertion.len() - signature.len() - 1;
    let valid = jsonwebtoken::crypto::verify(
        signature.trim_end_matches('='),
        &assertion.as_bytes()[..signed_len],
        &account.verifying_key,
        Algorithm::RS256,
    )
    .unwrap_or(false);
    if !valid {
        return Err(TokenError::invalid_grant("Invalid JWT Signature."));
    }
    let (Some(exp), Some(iat)) = (claims.exp, claims.iat) else {
        return Err(TokenError::invalid_grant(BAD_TIMES));
    };
    if exp <= now || iat > now + MAX_CLOCK_SKEW_SECS || exp - iat > MAX_ASSERTION_LIFETIME_SECS {
        return Err(TokenError::invalid_grant(BAD_TIMES));
    }
    let scope = claims.scope.unwrap_or_default();
    if !scope.split(' ').any(|s| SEND_SCOPES.contains(&s)) {
        return Err(TokenError::invalid_grant(
            "Invalid OAuth scope or ID token audience provided.",
        ));
    }
    Ok(())
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let bytes = B64
        .decode(segment)
        .map_err(|_| TokenError::invalid_grant("Invalid JWT: bad base64url encoding."))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::invalid_grant("Invalid JWT: segment is not a JSON object."))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
