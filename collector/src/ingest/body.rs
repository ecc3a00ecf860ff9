//! Request bodies as pushers send them: the HTTP content encoding (gzip, deflate) and snappy's
//! block format taken off, each bounded so that a small body cannot claim a huge one.

use std::io::Read;

/// Largest body after taking off its content encoding and snappy.
pub const MAX_DECODED_BYTES: usize = 128 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("unsupported Content-Encoding {0:?}: send gzip, deflate or none")]
    Encoding(String),
    #[error("body is not {encoding}: {detail}")]
    Compression { encoding: &'static str, detail: String },
    #[error("decompressed body exceeds the limit of {MAX_DECODED_BYTES} bytes")]
    TooLarge,
}

/// The body without its `Content-Encoding` (none, `identity`, `gzip`, `deflate`).
pub fn decode_content<'a>(body: &'a [u8], encoding: Option<&str>) -> Result<std::borrow::Cow<'a, [u8]>, BodyError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty() && e != "identity");
    let mut out = Vec::new();
    let limit = MAX_DECODED_BYTES as u64 + 1;
    let read = match encoding.as_deref() {
        None => return Ok(std::borrow::Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => {
            flate2::read::GzDecoder::new(body).take(limit).read_to_end(&mut out).map_err(|e| ("gzip", e))
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(body).take(limit).read_to_end(&mut out).map_err(|e| ("deflate", e))
        }
        Some(other) => return Err(BodyError::Encoding(other.to_string())),
    };
    read.map_err(|(encoding, e)| BodyError::Compression { encoding, detail: e.to_string() })?;
    if out.len() > MAX_DECODED_BYTES {
        return Err(BodyError::TooLarge);
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// A snappy block (remote-write's and Loki's framing), its claimed length checked before allocating.
pub fn unsnappy(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let snappy =
        |e: snap::Error| BodyError::Compression { encoding: "snappy-compressed (block format)", detail: e.to_string() };
    let len = snap::raw::decompress_len(body).map_err(snappy)?;
    if len > MAX_DECODED_BYTES {
        return Err(BodyError::TooLarge);
    }
    snap::raw::Decoder::new().decompress_vec(body).map_err(snappy)
}

/// The media type of a `Content-Type` header, lowercased, without its parameters.
pub fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}
