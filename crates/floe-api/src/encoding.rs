//! How keys, values and header values are written in JSON bodies (`?encoding=`).

use serde::{Deserialize, Serialize};

/// How keys, values and header values are written in JSON bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text (the default).
    #[default]
    Text,
    /// Base64 of arbitrary bytes.
    Base64,
    /// Any JSON value, stored as its serialized bytes.
    Json,
}

impl Encoding {
    /// The value of the `encoding` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Base64 => "base64",
            Self::Json => "json",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(Self::Text),
            "base64" => Ok(Self::Base64),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown encoding {other:?}: expected text, base64 or json"
            )),
        }
    }
}
