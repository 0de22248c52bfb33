//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): SHA-1, 6 digits, 30-second
//! steps, what every authenticator app reads from an `otpauth://` URI.
//!
//! The algorithm is a few lines over aws-lc's HMAC (already the crypto of the whole service),
//! so no second SHA-1/HMAC implementation comes in with a TOTP crate; base32 is the
//! `data-encoding` crate (strict decoding, no panics). A presented code is compared with the
//! expected ones in constant time, and all three candidate steps are always computed, so the
//! time taken says nothing about which step (if any) matched. The RFC 6238 test vectors are
//! a unit test below.

use std::fmt;

use aws_lc_rs::hmac;
use data_encoding::BASE32_NOPAD;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use secrecy::zeroize::Zeroize as _;

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Bytes of a secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

/// What the label and the issuer of an `otpauth://` URI must escape: whatever would end or
/// split the label or a query value. `@`, `.` and `-` stay as they are, so the URI reads
/// `otpauth://totp/user-service:ada@example.com?...`.
const URI_ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A TOTP shared secret. Never printed; zeroed when dropped.
pub struct TotpSecret {
    bytes: [u8; SECRET_BYTES],
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl Drop for TotpSecret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl TotpSecret {
    /// 160 bits from the system CSPRNG.
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; SECRET_BYTES];
        aws_lc_rs::rand::fill(&mut bytes)?;
        Ok(Self { bytes })
    }

    /// A secret of exactly [`SECRET_BYTES`] bytes (a decrypted one); `None` otherwise.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            bytes: bytes.try_into().ok()?,
        })
    }

    /// The raw bytes (to encrypt).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Base32 without padding, as the set-up shows it and `otpauth://` carries it.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.bytes)
    }

    /// The code of time step `step` (seconds since the epoch / [`STEP_SECS`]), as 6 digits.
    pub fn code_at(&self, step: u64) -> String {
        hotp(&self.bytes, step)
    }

    /// The step whose code `code` is, among the step of `now_secs` and the ones before and
    /// after it (clock drift); `None` if none matches or `code` is not 6 digits. Constant
    /// time in the code's value.
    pub fn matching_step(&self, code: &str, now_secs: u64) -> Option<u64> {
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now = now_secs / STEP_SECS;
        let mut matched = None;
        for step in [now.saturating_sub(1), now, now + 1] {
            let expected = hotp(&self.bytes, step);
            if aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                code.as_bytes(),
            )
            .is_ok()
            {
                matched = Some(step);
            }
        }
        matched
    }

    /// The `otpauth://totp/...` URI an authenticator app scans: the label `issuer:account`,
    /// the secret, the issuer again (as apps expect) and the algorithm's parameters.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let issuer = utf8_percent_encode(issuer, URI_ESCAPED).to_string();
        let account = utf8_percent_encode(account, URI_ESCAPED);
        format!(
            "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            self.to_base32()
        )
    }
}

/// HOTP (RFC 4226 section 5.3): HMAC-SHA-1 of the big-endian counter, dynamic truncation,
/// the last [`DIGITS`] decimal digits.
fn hotp(key: &[u8], counter: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, the SHA-1 rows (its 8-digit codes; we use the last 6 digits,
    /// which is what truncation to 6 digits gives).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").expect("20 bytes");
        for (time, code8) in [
            (59_u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(secret.code_at(time / STEP_SECS), code8[2..], "T = {time}");
            assert_eq!(
                secret.matching_step(&code8[2..], time),
                Some(time / STEP_SECS)
            );
        }
    }

    #[test]
    fn the_steps_before_and_after_match_and_no_others() {
        let secret = TotpSecret::generate().expect("rng");
        let now = 1_800_000_000_u64;
        let step = now / STEP_SECS;
        for (offset, accepted) in [
            (-2_i64, false),
            (-1, true),
            (0, true),
            (1, true),
            (2, false),
        ] {
            let s = step.checked_add_signed(offset).expect("step");
            let code = secret.code_at(s);
            // A code of a far step can collide with a near one once in ~333,000 tries.
            let collides = [step - 1, step, step + 1]
                .iter()
                .any(|near| secret.code_at(*near) == code);
            assert_eq!(
                secret.matching_step(&code, now).is_some(),
                accepted || collides,
                "offset {offset}"
            );
        }
        for garbage in ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", " 12345"] {
            assert_eq!(secret.matching_step(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn the_uri_carries_the_base32_secret_and_the_parameters() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").expect("20 bytes");
        assert_eq!(secret.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            secret.otpauth_uri("user-service", "ada@example.com"),
            "otpauth://totp/user-service:ada@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=user-service&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            secret.otpauth_uri("Acme & Co", "a+b/c@example.com"),
            "otpauth://totp/Acme%20%26%20Co:a%2Bb%2Fc@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20%26%20Co&algorithm=SHA1&digits=6&period=30"
        );
        assert!(!format!("{secret:?}").contains("GEZD"));
    }
}
