//! A signed JSON POST with retries: HMAC-SHA256 of the body in `X-Lookout-Signature: sha256=<hex>`,
//! four attempts 1 s, 2 s and 4 s apart; the answer says what happened, for the decision log.

use std::time::Duration;

/// Sends webhook bodies; one client (and its connection pool) for all of them.
#[derive(Clone)]
pub struct Webhook {
    http: reqwest::Client,
}

impl Default for Webhook {
    fn default() -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Webhook { http }
    }
}

impl Webhook {
    /// POSTs `body` to `url`, retrying with backoff; `Ok` with what the receiver answered, or
    /// `Err` with the last failure after four attempts.
    pub async fn post(&self, url: &str, secret: Option<&str>, body: String) -> Result<String, String> {
        let signature = secret.map(|s| sign(s, body.as_bytes()));
        let mut last_error = String::new();
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
            }
            let mut req = self.http.post(url).header("content-type", "application/json").body(body.clone());
            if let Some(sig) = &signature {
                req = req.header("x-lookout-signature", format!("sha256={sig}"));
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    return Ok(format!("{url} answered {} on attempt {}", r.status(), attempt + 1));
                }
                Ok(r) => last_error = format!("{url} answered {}", r.status()),
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
        Err(format!("4 attempts; last: {last_error}"))
    }
}

/// HMAC-SHA256 of `body` with `secret`, in hex.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_body_is_signed_with_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
