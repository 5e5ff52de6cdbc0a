//! Static bearer tokens from a file: one `principal:HASH` a line, HASH the lowercase hex
//! SHA-256 of the token or an argon2 PHC string (`$argon2id$…`). The file is re-read when
//! it changes; tokens themselves are never stored or logged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};

/// The most tokens a file may hold, and the longest line.
const MAX_TOKENS: usize = 100_000;
const MAX_LINE: usize = 4096;
/// Argon2 verifications remembered (by the token's SHA-256), so a token is verified once.
const MAX_VERIFIED: usize = 4096;

/// Argon2 verifications running at once (each costs ~19 MiB and tens of ms).
const MAX_VERIFYING: usize = 2;

/// A parsed tokens file.
#[derive(Default)]
pub struct TokenTable {
    /// Principal by SHA-256 of the token.
    by_digest: HashMap<[u8; 32], String>,
    /// Principals whose token is an argon2 hash, with the hash.
    argon2: Arc<Vec<(String, String)>>,
    /// Argon2 successes so far: principal by the token's SHA-256 (failures are not
    /// remembered, so they cannot push valid tokens out).
    verified: Arc<parking_lot::Mutex<HashMap<[u8; 32], String>>>,
    verifying: Arc<parking_lot::Mutex<usize>>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("tokens", &self.len())
            .finish_non_exhaustive()
    }
}

/// What a token lookup found without argon2, or the argon2 work left to do.
#[derive(Debug)]
pub enum Lookup {
    Found(String),
    Unknown,
    Verify(Verifier),
}

/// Argon2 verification of one token against the table's argon2 entries, to run off the
/// async workers.
pub struct Verifier {
    digest: [u8; 32],
    argon2: Arc<Vec<(String, String)>>,
    verified: Arc<parking_lot::Mutex<HashMap<[u8; 32], String>>>,
    verifying: Arc<parking_lot::Mutex<usize>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// The principal, if the token matches an argon2 entry; `None` also when too many
    /// verifications already run (the client gets 401 and retries).
    pub fn verify(self, token: &str) -> Option<String> {
        {
            let mut running = self.verifying.lock();
            if *running >= MAX_VERIFYING {
                return None;
            }
            *running += 1;
        }
        let found = self.argon2.iter().find_map(|(principal, hash)| {
            let parsed = PasswordHash::new(hash).ok()?;
            argon2::Argon2::default()
                .verify_password(token.as_bytes(), &parsed)
                .ok()
                .map(|()| principal.clone())
        });
        *self.verifying.lock() -= 1;
        if let Some(principal) = &found {
            let mut verified = self.verified.lock();
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
            verified.insert(self.digest, principal.clone());
        }
        found
    }
}

impl TokenTable {
    /// Parses the file's text; an error names the line, never a token.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut table = Self::default();
        let mut argon2 = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > MAX_LINE {
                return Err(format!("line {number} is over {MAX_LINE} bytes"));
            }
            let Some((principal, hash)) = line.split_once(':') else {
                return Err(format!("line {number}: expected principal:HASH"));
            };
            if principal.is_empty() || principal.len() > floe_core::acl::MAX_ACL_NAME {
                return Err(format!("line {number}: the principal is empty or too long"));
            }
            if hash.starts_with("$argon2") {
                let parsed = PasswordHash::new(hash)
                    .map_err(|error| format!("line {number}: not an argon2 PHC string: {error}"))?;
                if parsed.hash.is_none() || parsed.salt.is_none() {
                    return Err(format!(
                        "line {number}: the argon2 PHC string has no salt or hash"
                    ));
                }
                argon2.push((principal.to_owned(), hash.to_owned()));
            } else {
                let digest = decode_digest(hash).ok_or_else(|| {
                    format!("line {number}: expected 64 lowercase hex digits (SHA-256) or $argon2…")
                })?;
                table.by_digest.insert(digest, principal.to_owned());
            }
            if table.by_digest.len() + argon2.len() > MAX_TOKENS {
                return Err(format!("more than {MAX_TOKENS} tokens"));
            }
        }
        table.argon2 = Arc::new(argon2);
        Ok(table)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len() + self.argon2.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal a token belongs to, or the argon2 work that would tell.
    pub fn lookup(&self, token: &str) -> Lookup {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.by_digest.get(&digest) {
            return Lookup::Found(principal.clone());
        }
        if self.argon2.is_empty() {
            return Lookup::Unknown;
        }
        if let Some(known) = self.verified.lock().get(&digest) {
            return Lookup::Found(known.clone());
        }
        Lookup::Verify(Verifier {
            digest,
            argon2: Arc::clone(&self.argon2),
            verified: Arc::clone(&self.verified),
            verifying: Arc::clone(&self.verifying),
        })
    }

    /// [`TokenTable::lookup`], verifying argon2 tokens in place (tests and tools).
    pub fn principal(&self, token: &str) -> Option<String> {
        match self.lookup(token) {
            Lookup::Found(principal) => Some(principal),
            Lookup::Unknown => None,
            Lookup::Verify(verifier) => verifier.verify(token),
        }
    }
}

fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(digest)
}

/// The lowercase hex SHA-256 of a token: what a tokens file holds for it.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A tokens file and when it was last read.
#[derive(Debug)]
pub struct TokensFile {
    path: PathBuf,
    /// Modification time and length when last read: a change of either re-reads it.
    modified: Option<(SystemTime, u64)>,
}

impl TokensFile {
    /// Reads the file once; a missing or malformed file is an error at start.
    pub fn load(path: &Path) -> Result<(Self, TokenTable), String> {
        let (modified, table) = read(path)?;
        Ok((
            Self {
                path: path.to_owned(),
                modified,
            },
            table,
        ))
    }

    /// A new table when the file changed since it was last read; `Err` when it changed
    /// into something that does not parse (the old table stays in force).
    pub fn reload(&mut self) -> Result<Option<TokenTable>, String> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|meta| Ok((meta.modified()?, meta.len())))
            .ok();
        if modified == self.modified {
            return Ok(None);
        }
        let (modified, table) = read(&self.path)?;
        self.modified = modified;
        Ok(Some(table))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read(path: &Path) -> Result<(Option<(SystemTime, u64)>, TokenTable), String> {
    let meta = std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
    if meta.len() > (MAX_TOKENS * 128) as u64 {
        return Err(format!("{}: too large to be a tokens file", path.display()));
    }
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let table = TokenTable::parse(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    Ok((meta.modified().ok().map(|time| (time, meta.len())), table))
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, SaltString};

    use super::*;

    #[test]
    fn sha256_and_argon2_tokens_map_to_principals() {
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").expect("salt");
        let phc = argon2::Argon2::default()
            .hash_password(b"bob-secret", &salt)
            .expect("hash")
            .to_string();
        let text = format!(
            "# comment\n\nalice:{}\nbob:{phc}\n",
            token_digest("alice-secret")
        );
        let table = TokenTable::parse(&text).expect("parse");
        assert_eq!(table.len(), 2);
        assert_eq!(table.principal("alice-secret").as_deref(), Some("alice"));
        assert_eq!(table.principal("bob-secret").as_deref(), Some("bob"));
        assert_eq!(
            table.principal("bob-secret").as_deref(),
            Some("bob"),
            "cached"
        );
        assert_eq!(table.principal("wrong"), None);
        assert_eq!(table.principal("wrong"), None);
    }

    #[test]
    fn malformed_files_name_the_line_not_the_token() {
        for bad in ["alice", "alice:xyz", ":abc", "alice:$argon2id$nonsense"] {
            let error = TokenTable::parse(bad).expect_err(bad);
            assert!(error.contains("line 1"), "{error}");
        }
        let upper = format!("a:{}", token_digest("t").to_uppercase());
        assert!(TokenTable::parse(&upper).is_err(), "hex is lowercase");
    }
}
