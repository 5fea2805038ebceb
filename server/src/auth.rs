//! Who a `/rooms` connection is: signed tokens (JWT, RFC 7519) checked against the keys of
//! `--auth-key`, and what they grant.
//!
//! A token is read here in three steps, each with a refusal a person can act on: its header
//! (`alg` exactly `HS256` for an HMAC secret, exactly `EdDSA` for an Ed25519 key; anything
//! else, `none` included, is "algorithm not allowed"), its signature (`jsonwebtoken`'s
//! verification, against every key of that kind, so two keys rotate), then its claims, checked
//! by hand so that a refusal names the claim (`missing claim: rooms`). Reasons are fixed
//! strings: none ever holds the token or a key.
//!
//! Times: `exp` is checked without leeway (a connection is closed when it passes, so accepting
//! an expired token would only close it at once); `nbf` with [`NBF_LEEWAY_SECS`], for a
//! backend whose clock runs a little ahead.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use room_protocol::bounds::MAX_TOKEN_BYTES;
use room_protocol::names;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Config;

/// How far ahead of this server's clock a token's `nbf` may be.
pub(crate) const NBF_LEEWAY_SECS: u64 = 5;

/// Shortest HMAC secret accepted: 256 bits, as RFC 7518 3.2 asks for HS256.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// What a connection may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    /// Read and publish.
    Write,
}

/// The `rooms` claim: exact room names and prefixes (`team-42.*`, `*`) to an access.
///
/// When several apply, an exact name decides; otherwise the longest prefix does. So
/// `{"*":"read","lobby":"write"}` lets one write in `lobby` only, and
/// `{"team.*":"write","team.audit":"read"}` makes one room of the team read-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    exact: BTreeMap<String, Access>,
    /// Prefixes without their `*`, longest first.
    prefixes: Vec<(String, Access)>,
}

impl Grants {
    /// What the token lets its holder do in `room`, if anything.
    pub(crate) fn access(&self, room: &str) -> Option<Access> {
        if let Some(access) = self.exact.get(room) {
            return Some(*access);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| room.starts_with(prefix.as_str()))
            .map(|(_, access)| *access)
    }

    pub(crate) fn may_read(&self, room: &str) -> bool {
        self.access(room).is_some()
    }

    pub(crate) fn may_write(&self, room: &str) -> bool {
        self.access(room) == Some(Access::Write)
    }

    /// Reads a `rooms` claim (`{"lobby":"write","news.*":"read"}`).
    fn from_claim(claim: &Value) -> Result<Grants, Refusal> {
        let Value::Object(entries) = claim else {
            return Err(Refusal::BadClaim("rooms"));
        };
        let mut grants = Grants::default();
        for (pattern, access) in entries {
            let access = match access.as_str() {
                Some("read") => Access::Read,
                Some("write") => Access::Write,
                _ => return Err(Refusal::BadClaim("rooms")),
            };
            grants.add(pattern, access)?;
        }
        grants
            .prefixes
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Ok(grants)
    }

    fn add(&mut self, pattern: &str, access: Access) -> Result<(), Refusal> {
        match pattern.strip_suffix('*') {
            // A prefix holds what a room name may (or nothing: `*`).
            Some(prefix) if prefix.is_empty() || names::is_room_name(prefix) => {
                self.prefixes.push((prefix.to_owned(), access));
            }
            None if names::is_room_name(pattern) => {
                self.exact.insert(pattern.to_owned(), access);
            }
            _ => return Err(Refusal::BadClaim("rooms")),
        }
        Ok(())
    }

    /// `lobby=write` as `server token --room` takes it.
    pub fn parse_flag(flag: &str) -> Result<(String, Access), String> {
        let (pattern, access) = flag
            .split_once('=')
            .ok_or_else(|| format!("{flag:?}: a grant is ROOM=read or ROOM=write"))?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            other => return Err(format!("{other:?}: a grant is read or write")),
        };
        Grants::default()
            .add(pattern, access)
            .map_err(|_| format!("{pattern:?}: a room name, or a prefix of one ending in *"))?;
        Ok((pattern.to_owned(), access))
    }
}

/// Who a connection is, from an accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The token's `sub`.
    pub user: String,
    /// What others see as `from`: the token's `name`, else its `sub`.
    pub name: String,
    /// The token's `exp`, in ms since the Unix epoch.
    pub expires_ms: u64,
    pub grants: Grants,
}

/// Why a token was refused: the close reason (4401), in words a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooLong,
    Malformed,
    AlgorithmNotAllowed,
    /// The header names extensions the token may not be used without (`crit`, RFC 7515
    /// 4.1.6): this server understands none.
    CriticalExtension,
    BadSignature,
    Expired,
    NotYetValid,
    MissingClaim(&'static str),
    BadClaim(&'static str),
}

impl Refusal {
    /// The close reason: a fixed string, never the token.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::TooLong => "token too long",
            Refusal::Malformed => "malformed token",
            Refusal::AlgorithmNotAllowed => "algorithm not allowed",
            Refusal::CriticalExtension => "critical header extension not understood (crit)",
            Refusal::BadSignature => "bad signature",
            Refusal::Expired => "token expired",
            Refusal::NotYetValid => "token not yet valid",
            Refusal::MissingClaim("sub") => "missing claim: sub",
            Refusal::MissingClaim("exp") => "missing claim: exp",
            Refusal::MissingClaim(_) => "missing claim: rooms",
            Refusal::BadClaim("sub") => {
                "bad claim: sub (1 to 64 characters, no control or format characters)"
            }
            Refusal::BadClaim("exp") => "bad claim: exp (seconds since the Unix epoch)",
            Refusal::BadClaim("nbf") => "bad claim: nbf (seconds since the Unix epoch)",
            Refusal::BadClaim("name") => {
                "bad claim: name (a display name: 1 to 32 characters, none invisible, no space at either end)"
            }
            Refusal::BadClaim(_) => {
                "bad claim: rooms (an object of room names or prefixes ending in * to \"read\" or \"write\")"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// One key of `--auth-key`.
enum Key {
    /// An HMAC secret: `HS256` only.
    Hmac(DecodingKey),
    /// An Ed25519 public key: `EdDSA` only.
    Ed25519(DecodingKey),
}

/// The keys tokens may be signed with (one, or two while they rotate).
pub(crate) struct Keys {
    keys: Vec<Key>,
}

impl fmt::Debug for Keys {
    /// Never the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("count", &self.keys.len())
            .finish()
    }
}

/// The bytes of a key file as a key is made of: an HMAC secret loses one trailing newline.
fn secret_bytes(contents: &[u8]) -> &[u8] {
    let trimmed = contents.strip_suffix(b"\n").unwrap_or(contents);
    trimmed.strip_suffix(b"\r").unwrap_or(trimmed)
}

fn is_pem(contents: &[u8]) -> bool {
    contents.trim_ascii_start().starts_with(b"-----BEGIN ")
}

/// The DER prefix of an Ed25519 public key (SubjectPublicKeyInfo), before its 32 bytes.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What a key file holds when it is a public key in a format this server does not read:
/// taken as an HMAC secret, it would let anyone who has the public key sign tokens.
fn public_key_format(contents: &[u8]) -> Option<&'static str> {
    let text = contents.trim_ascii_start();
    if text.starts_with(b"ssh-") || text.starts_with(b"ecdsa-sha2-") {
        Some("an OpenSSH public key")
    } else if text.starts_with(b"{") {
        Some("a JSON (JWK) key")
    } else if contents.starts_with(ED25519_SPKI_PREFIX) {
        Some("an Ed25519 public key in DER")
    } else {
        None
    }
}

/// Makes sure jsonwebtoken signs and verifies with its pure-Rust provider: installed once,
/// so a build that also enabled another provider cannot panic at the first token.
fn crypto_ready() {
    // `Err` when one is installed already: the first install stays, and it is this one.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("--auth-key {}: {error}", path.display()))
}

impl Keys {
    /// Reads every `--auth-key` file: an HMAC secret (at least 32 bytes) or an Ed25519 public
    /// key in PEM. The error is one line for `main` to print.
    pub(crate) fn load(paths: &[impl AsRef<Path>]) -> Result<Keys, String> {
        crypto_ready();
        let mut keys = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref();
            let contents = read_key_file(path)?;
            keys.push(Keys::key(path, &contents)?);
        }
        Ok(Keys { keys })
    }

    fn key(path: &Path, contents: &[u8]) -> Result<Key, String> {
        let shown = path.display();
        if is_pem(contents) {
            if contents.windows(11).any(|window| window == b"PRIVATE KEY") {
                return Err(format!(
                    "--auth-key {shown}: a private key; the server takes the public one \
                     (openssl pkey -in KEY -pubout)"
                ));
            }
            let key = DecodingKey::from_ed_pem(contents)
                .map_err(|_| format!("--auth-key {shown}: not an Ed25519 public key in PEM"))?;
            // A key that parses but is no point of the curve fails every verification: say so
            // now rather than refuse every token.
            let zero_signature = "A".repeat(86);
            return match jsonwebtoken::crypto::verify(&zero_signature, b"", &key, Algorithm::EdDSA)
            {
                Ok(_) => Ok(Key::Ed25519(key)),
                Err(_) => Err(format!(
                    "--auth-key {shown}: not a valid Ed25519 public key"
                )),
            };
        }
        if let Some(format) = public_key_format(contents) {
            return Err(format!(
                "--auth-key {shown}: {format}; the server reads an HMAC secret, or an Ed25519 \
                 public key in PEM (-----BEGIN PUBLIC KEY-----)"
            ));
        }
        let secret = secret_bytes(contents);
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "--auth-key {shown}: an HMAC secret of {} bytes; at least {MIN_SECRET_BYTES} \
                 are needed (e.g. head -c 32 /dev/urandom | base64 > {shown})",
                secret.len()
            ));
        }
        DecodingKey::from_secret(secret)
            .map(Key::Hmac)
            .map_err(|_| format!("--auth-key {shown}: not usable as an HMAC secret"))
    }

    /// A secret drawn now, for `--dev-sign-in` without `--auth-key`: tokens that live as long
    /// as this process.
    pub(crate) fn with_secret(secret: &[u8]) -> Keys {
        crypto_ready();
        Keys {
            keys: vec![Key::Hmac(
                DecodingKey::from_secret(secret).expect("an HMAC key takes any bytes"),
            )],
        }
    }

    /// Checks `token` at `now_ms` (ms since the Unix epoch).
    pub(crate) fn verify(&self, token: &str, now_ms: u64) -> Result<Identity, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let algorithm = algorithm_of(header)?;
        // Base64url, checked once here: a key's failure below is then that key's alone.
        if signature.is_empty()
            || !signature
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return Err(Refusal::Malformed);
        }
        let message = &token[..header.len() + 1 + payload.len()];
        let mut verified = false;
        for key in &self.keys {
            let key = match (key, algorithm) {
                (Key::Hmac(key), Algorithm::HS256) | (Key::Ed25519(key), Algorithm::EdDSA) => key,
                _ => continue,
            };
            // Not this key's signature (or one it cannot check): the next key may be.
            let checked =
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, algorithm);
            if checked.unwrap_or(false) {
                verified = true;
                break;
            }
        }
        if !self.keys.iter().any(|key| {
            matches!(
                (key, algorithm),
                (Key::Hmac(_), Algorithm::HS256) | (Key::Ed25519(_), Algorithm::EdDSA)
            )
        }) {
            // An algorithm this server takes, but no key of its kind: HS256 against an
            // Ed25519 key (the classic confusion attack) or the other way round.
            return Err(Refusal::AlgorithmNotAllowed);
        }
        if !verified {
            return Err(Refusal::BadSignature);
        }
        claims_of(payload, now_ms)
    }
}

/// The header's `alg`, if this server takes it.
fn algorithm_of(header: &str) -> Result<Algorithm, Refusal> {
    #[derive(Deserialize)]
    struct Head {
        alg: Option<Value>,
    }
    let bytes = BASE64URL_NOPAD
        .decode(header.as_bytes())
        .map_err(|_| Refusal::Malformed)?;
    let head: Head = serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
    // A token that says it must not be used by anyone who does not understand an extension
    // is not used here, whatever `crit` holds (an empty list or `null` are not allowed
    // either). Looked up as a key: `Option` would take `null` for absent.
    let fields: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
    if fields.contains_key("crit") {
        return Err(Refusal::CriticalExtension);
    }
    match head.alg.as_ref().and_then(Value::as_str) {
        Some("HS256") => Ok(Algorithm::HS256),
        Some("EdDSA") => Ok(Algorithm::EdDSA),
        Some(_) => Err(Refusal::AlgorithmNotAllowed),
        None => Err(Refusal::Malformed),
    }
}

/// Checks the claims of a token whose signature holds.
fn claims_of(payload: &str, now_ms: u64) -> Result<Identity, Refusal> {
    let bytes = BASE64URL_NOPAD
        .decode(payload.as_bytes())
        .map_err(|_| Refusal::Malformed)?;
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(Refusal::Malformed);
    };
    let user = match claims.get("sub") {
        None => return Err(Refusal::MissingClaim("sub")),
        Some(Value::String(sub)) if names::is_user_id(sub) => sub.clone(),
        Some(_) => return Err(Refusal::BadClaim("sub")),
    };
    let exp = match claims.get("exp") {
        None => return Err(Refusal::MissingClaim("exp")),
        Some(exp) => seconds(exp).ok_or(Refusal::BadClaim("exp"))?,
    };
    let rooms = claims.get("rooms").ok_or(Refusal::MissingClaim("rooms"))?;
    let now_secs = now_ms / 1000;
    if exp.saturating_mul(1000) <= now_ms {
        return Err(Refusal::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = seconds(nbf).ok_or(Refusal::BadClaim("nbf"))?;
        if nbf > now_secs + NBF_LEEWAY_SECS {
            return Err(Refusal::NotYetValid);
        }
    }
    let name = match claims.get("name") {
        // `sub` may be longer than a display name: its first characters then.
        None => {
            let shown: String = user.chars().take(names::MAX_DISPLAY_NAME).collect();
            if names::is_display_name(&shown) {
                shown
            } else {
                "(no name)".to_owned()
            }
        }
        // Trimmed first: a name from profile data with a space at an end ("Ana ") is meant
        // as the name without it, and refusing the whole token for it would lock its user out.
        Some(Value::String(name)) if names::is_display_name(name.trim()) => name.trim().to_owned(),
        Some(_) => return Err(Refusal::BadClaim("name")),
    };
    Ok(Identity {
        user,
        name,
        expires_ms: exp.saturating_mul(1000),
        grants: Grants::from_claim(rooms)?,
    })
}

/// A NumericDate (RFC 7519 2): seconds, possibly with a fraction, which is dropped.
fn seconds(value: &Value) -> Option<u64> {
    if let Some(whole) = value.as_u64() {
        return Some(whole);
    }
    let real = value.as_f64()?;
    // Truncation is the point: a fraction of a second is dropped.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (real.is_finite() && (0.0..1e15).contains(&real)).then_some(real as u64)
}

/// The claims this server's own tokens carry (`server token`, `--dev-sign-in`).
#[derive(Debug, Serialize)]
pub(crate) struct Claims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    pub iat: u64,
    pub rooms: BTreeMap<String, &'static str>,
}

impl Claims {
    pub(crate) fn grant(&mut self, pattern: String, access: Access) {
        self.rooms.insert(
            pattern,
            match access {
                Access::Read => "read",
                Access::Write => "write",
            },
        );
    }
}

/// A key to sign with: an HMAC secret (`HS256`) or an Ed25519 private key in PEM (`EdDSA`).
pub(crate) struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a key file for signing.
    pub(crate) fn load(path: &Path) -> Result<Signer, String> {
        crypto_ready();
        let contents = read_key_file(path)?;
        let shown = path.display();
        if is_pem(&contents) {
            return EncodingKey::from_ed_pem(&contents)
                .map(|key| Signer {
                    key,
                    algorithm: Algorithm::EdDSA,
                })
                .map_err(|_| {
                    format!(
                        "--auth-key {shown}: to sign, an Ed25519 private key in PEM \
                         (or an HMAC secret)"
                    )
                });
        }
        let secret = secret_bytes(&contents);
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "--auth-key {shown}: an HMAC secret of {} bytes; at least {MIN_SECRET_BYTES} \
                 are needed",
                secret.len()
            ));
        }
        Ok(Signer::with_secret(secret))
    }

    /// The first HMAC secret among `paths`, for `--dev-sign-in` (it cannot sign with a public key).
    pub(crate) fn first_secret(paths: &[impl AsRef<Path>]) -> Result<Option<Signer>, String> {
        for path in paths {
            let contents = read_key_file(path.as_ref())?;
            if !is_pem(&contents) {
                return Signer::load(path.as_ref()).map(Some);
            }
        }
        Ok(None)
    }

    pub(crate) fn with_secret(secret: &[u8]) -> Signer {
        crypto_ready();
        Signer {
            key: EncodingKey::from_secret(secret).expect("an HMAC key takes any bytes"),
            algorithm: Algorithm::HS256,
        }
    }

    /// `bytes` signed, base64url: a value only this key gives for them.
    fn sign_bytes(&self, bytes: &[u8]) -> String {
        jsonwebtoken::crypto::sign(bytes, &self.key, self.algorithm).expect("bytes always sign")
    }

    pub(crate) fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key)
            .expect("plain claims always sign")
    }
}

/// `server token`: a token signed with `args.auth_key`, or one line saying what is wrong.
pub fn mint(args: &crate::config::TokenArgs) -> Result<String, String> {
    if !names::is_user_id(&args.sub) {
        return Err(format!(
            "--sub: 1 to {} characters, {}",
            names::MAX_USER_ID,
            names::REFUSED_CHARACTERS
        ));
    }
    if let Some(name) = &args.name
        && !names::is_display_name(name)
    {
        return Err(format!(
            "--name: 1 to {} characters, {}",
            names::MAX_DISPLAY_NAME,
            names::DISPLAY_NAME_RULES
        ));
    }
    let signer = Signer::load(&args.auth_key)?;
    let now = crate::rooms::wall_ms() / 1000;
    let mut claims = Claims {
        sub: args.sub.clone(),
        name: args.name.clone(),
        exp: now + args.ttl.as_secs(),
        iat: now,
        rooms: BTreeMap::new(),
    };
    for (pattern, access) in &args.rooms {
        claims.grant(pattern.clone(), *access);
    }
    Ok(signer.sign(&claims))
}

/// What a server that wants tokens shares between its connections: the keys, the per-user
/// connection counts, and `--dev-sign-in`'s signer.
#[derive(Debug)]
pub(crate) struct Auth {
    keys: Keys,
    /// How long a new connection has to authenticate.
    pub timeout: Duration,
    max_per_user: u32,
    /// Connections per user on this instance: an entry lives while the user has one, so the
    /// table is bounded by the connection limit.
    users: Mutex<HashMap<String, u32>>,
    dev: Option<DevSignIn>,
}

/// `--dev-sign-in`: the server signs tokens for whatever name it is given.
#[derive(Debug)]
struct DevSignIn {
    signer: Signer,
    rooms: Vec<(String, Access)>,
    /// `--dev-token-ttl`.
    life: Duration,
}

impl Auth {
    /// The server's tokens setup from its flags: `None` when rooms are open.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Arc<Auth>>, String> {
        if config.auth_keys.is_empty() && !config.dev_sign_in {
            return Ok(None);
        }
        let (keys, dev) = if config.auth_keys.is_empty() {
            // Only `--dev-sign-in`: a secret for this run.
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|error| format!("no randomness: {error}"))?;
            let dev = DevSignIn {
                signer: Signer::with_secret(&secret),
                rooms: config.dev_rooms.clone(),
                life: config.dev_token_ttl,
            };
            (Keys::with_secret(&secret), Some(dev))
        } else {
            let keys = Keys::load(&config.auth_keys)?;
            let dev = if config.dev_sign_in {
                let signer = Signer::first_secret(&config.auth_keys)?.ok_or_else(|| {
                    "--dev-sign-in signs with an HMAC --auth-key, and every key given is an \
                     Ed25519 public key"
                        .to_owned()
                })?;
                Some(DevSignIn {
                    signer,
                    rooms: config.dev_rooms.clone(),
                    life: config.dev_token_ttl,
                })
            } else {
                None
            };
            (keys, dev)
        };
        Ok(Some(Arc::new(Auth {
            keys,
            timeout: config.auth_timeout,
            max_per_user: config.max_connections_per_user,
            users: Mutex::new(HashMap::new()),
            dev,
        })))
    }

    pub(crate) fn verify(&self, token: &str, now_ms: u64) -> Result<Identity, Refusal> {
        self.keys.verify(token, now_ms)
    }

    /// Counts a connection of `user`; `None` when the user has `--max-connections-per-user`.
    pub(crate) fn admit(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut users = crate::rooms::lock(&self.users);
        let count = users.entry(user.to_owned()).or_insert(0);
        if *count >= self.max_per_user {
            return None;
        }
        *count += 1;
        Some(UserSlot {
            auth: Arc::clone(self),
            user: user.to_owned(),
        })
    }

    /// Whether `POST /auth/token` signs tokens here.
    pub(crate) fn dev_sign_in(&self) -> bool {
        self.dev.is_some()
    }

    /// A `--dev-sign-in` token for `name` (a valid display name): its `sub` is derived from
    /// the name and the key, so the same name is the same user.
    pub(crate) fn dev_token(&self, name: &str, now_ms: u64) -> Option<String> {
        let dev = self.dev.as_ref()?;
        // Labelled: the key signs tokens too, and a user id must be no piece of a signature.
        let derived = dev
            .signer
            .sign_bytes(format!("rooms dev sign-in user id\0{name}").as_bytes());
        let mut claims = Claims {
            sub: format!("dev-{}", &derived[..16]),
            name: Some(name.to_owned()),
            exp: now_ms / 1000 + dev.life.as_secs(),
            iat: now_ms / 1000,
            rooms: BTreeMap::new(),
        };
        for (pattern, access) in &dev.rooms {
            claims.grant(pattern.clone(), *access);
        }
        Some(dev.signer.sign(&claims))
    }
}

/// One connection of a user, counted until dropped.
#[derive(Debug)]
pub(crate) struct UserSlot {
    auth: Arc<Auth>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut users = crate::rooms::lock(&self.auth.users);
        if let Some(count) = users.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW_MS: u64 = 1_800_000_000_000;

    fn keys() -> Keys {
        Keys::with_secret(SECRET)
    }

    fn part(json: &str) -> String {
        BASE64URL_NOPAD.encode(json.as_bytes())
    }

    /// A token with this header and payload, signed HS256 with `secret`.
    fn hs256(header: &str, payload: &str, secret: &[u8]) -> String {
        let message = format!("{}.{}", part(header), part(payload));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(secret).expect("key"),
            Algorithm::HS256,
        )
        .expect("signs");
        format!("{message}.{signature}")
    }

    fn claims(extra: &str) -> String {
        format!(r#"{{"sub":"ana","exp":1800000060,"rooms":{{"lobby":"write"}}{extra}}}"#)
    }

    const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn a_good_token_names_its_user_and_grants() {
        let token = hs256(HEADER, &claims(r#","name":"Ana","other":[1]"#), SECRET);
        let identity = keys().verify(&token, NOW_MS).expect("accepted");
        assert_eq!(identity.user, "ana");
        assert_eq!(identity.name, "Ana");
        assert_eq!(identity.expires_ms, 1_800_000_060_000);
        assert!(identity.grants.may_write("lobby"));
        assert!(!identity.grants.may_read("lobby2"));
        let unnamed = hs256(HEADER, &claims(""), SECRET);
        assert_eq!(keys().verify(&unnamed, NOW_MS).expect("ok").name, "ana");
        // A space at an end of the name is not part of it; the token still holds.
        let spaced = hs256(HEADER, &claims(r#","name":" Ana ""#), SECRET);
        assert_eq!(keys().verify(&spaced, NOW_MS).expect("ok").name, "Ana");
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let table = [
            (
                hs256(r#"{"alg":"none"}"#, &claims(""), SECRET),
                Refusal::AlgorithmNotAllowed,
            ),
            (
                hs256(r#"{"alg":"HS512"}"#, &claims(""), SECRET),
                Refusal::AlgorithmNotAllowed,
            ),
            (
                hs256(r#"{"alg":"EdDSA"}"#, &claims(""), SECRET),
                Refusal::AlgorithmNotAllowed,
            ),
            (
                hs256(r#"{"typ":"JWT"}"#, &claims(""), SECRET),
                Refusal::Malformed,
            ),
            // Signed with the right key, but it may not be used without an extension.
            (
                hs256(
                    r#"{"alg":"HS256","crit":["exp-v2"],"exp-v2":1}"#,
                    &claims(""),
                    SECRET,
                ),
                Refusal::CriticalExtension,
            ),
            (
                hs256(r#"{"alg":"HS256","crit":[]}"#, &claims(""), SECRET),
                Refusal::CriticalExtension,
            ),
            (
                hs256(r#"{"alg":"HS256","crit":null}"#, &claims(""), SECRET),
                Refusal::CriticalExtension,
            ),
            (
                hs256(HEADER, &claims(""), b"another secret of 32 bytes......"),
                Refusal::BadSignature,
            ),
            (
                hs256(
                    HEADER,
                    r#"{"sub":"ana","exp":1800000000,"rooms":{}}"#,
                    SECRET,
                ),
                Refusal::Expired,
            ),
            (
                hs256(HEADER, &claims(r#","nbf":1800000006"#), SECRET),
                Refusal::NotYetValid,
            ),
            (
                hs256(HEADER, r#"{"exp":1800000060,"rooms":{}}"#, SECRET),
                Refusal::MissingClaim("sub"),
            ),
            (
                hs256(HEADER, r#"{"sub":"ana","rooms":{}}"#, SECRET),
                Refusal::MissingClaim("exp"),
            ),
            (
                hs256(HEADER, r#"{"sub":"ana","exp":1800000060}"#, SECRET),
                Refusal::MissingClaim("rooms"),
            ),
            (
                hs256(HEADER, r#"{"sub":"","exp":1800000060,"rooms":{}}"#, SECRET),
                Refusal::BadClaim("sub"),
            ),
            (
                hs256(
                    HEADER,
                    r#"{"sub":"a\u202eb","exp":1800000060,"rooms":{}}"#,
                    SECRET,
                ),
                Refusal::BadClaim("sub"),
            ),
            (
                hs256(HEADER, r#"{"sub":"ana","exp":"soon","rooms":{}}"#, SECRET),
                Refusal::BadClaim("exp"),
            ),
            (
                hs256(
                    HEADER,
                    r#"{"sub":"ana","exp":1800000060,"rooms":{"a b":"read"}}"#,
                    SECRET,
                ),
                Refusal::BadClaim("rooms"),
            ),
            (
                hs256(
                    HEADER,
                    r#"{"sub":"ana","exp":1800000060,"rooms":{"a":"admin"}}"#,
                    SECRET,
                ),
                Refusal::BadClaim("rooms"),
            ),
            (
                hs256(
                    HEADER,
                    r#"{"sub":"ana","exp":1800000060,"rooms":["a"]}"#,
                    SECRET,
                ),
                Refusal::BadClaim("rooms"),
            ),
            (
                hs256(HEADER, &claims(r#","name":"""#), SECRET),
                Refusal::BadClaim("name"),
            ),
            ("a.b".to_owned(), Refusal::Malformed),
            ("a.b.c.d".to_owned(), Refusal::Malformed),
            ("!!.!!.!!".to_owned(), Refusal::Malformed),
            (
                format!("{}.!!", &hs256(HEADER, &claims(""), SECRET)[..60]),
                Refusal::Malformed,
            ),
            ("x".repeat(MAX_TOKEN_BYTES + 1), Refusal::TooLong),
        ];
        for (token, refusal) in table {
            assert_eq!(keys().verify(&token, NOW_MS), Err(refusal), "{token}");
            assert!(!refusal.reason().contains(&token), "{refusal:?}");
        }
    }

    #[test]
    fn nbf_is_honoured_with_five_seconds_of_leeway_and_exp_with_none() {
        let soon = hs256(HEADER, &claims(r#","nbf":1800000005"#), SECRET);
        assert!(keys().verify(&soon, NOW_MS).is_ok());
        let token = hs256(HEADER, &claims(""), SECRET);
        assert!(keys().verify(&token, 1_800_000_059_999).is_ok());
        assert_eq!(
            keys().verify(&token, 1_800_000_060_000),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn either_of_two_keys_verifies_while_they_rotate() {
        let second = b"a second secret, also 32 bytes..";
        let both = Keys {
            keys: vec![
                Key::Hmac(DecodingKey::from_secret(SECRET).expect("key")),
                Key::Hmac(DecodingKey::from_secret(second).expect("key")),
            ],
        };
        for secret in [SECRET, second] {
            assert!(
                both.verify(&hs256(HEADER, &claims(""), secret), NOW_MS)
                    .is_ok()
            );
        }
    }

    #[test]
    fn an_exact_name_beats_a_prefix_and_the_longest_prefix_beats_a_shorter_one() {
        let grants = Grants::from_claim(&serde_json::json!({
            "*": "read",
            "lobby": "write",
            "team.*": "write",
            "team.audit": "read",
            "team.ops.*": "read",
        }))
        .expect("grants");
        assert_eq!(grants.access("lobby"), Some(Access::Write));
        assert_eq!(grants.access("news"), Some(Access::Read));
        assert_eq!(grants.access("team.chat"), Some(Access::Write));
        assert_eq!(grants.access("team.audit"), Some(Access::Read));
        assert_eq!(grants.access("team.ops.pager"), Some(Access::Read));
        let narrow = Grants::from_claim(&serde_json::json!({"team-42.*": "write"})).expect("ok");
        assert_eq!(narrow.access("team-42.x"), Some(Access::Write));
        assert_eq!(narrow.access("team-42"), None);
        assert_eq!(narrow.access("team-420"), None);
    }

    #[test]
    fn a_key_file_is_a_long_enough_secret_or_an_ed25519_public_key() {
        let path = |name: &str| Path::new("/nonexistent").join(name);
        assert!(Keys::key(&path("k"), b"short\n").is_err());
        let exact = [b'k'; MIN_SECRET_BYTES];
        let mut with_newline = exact.to_vec();
        with_newline.push(b'\n');
        assert!(Keys::key(&path("k"), &with_newline).is_ok());
        assert!(Keys::key(&path("k"), &exact[1..]).is_err());
        let private =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        let error = Keys::key(&path("k"), private).err().expect("refused");
        assert!(error.contains("private key"), "{error}");
        assert!(
            Keys::key(
                &path("k"),
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
            )
            .is_err()
        );
    }

    #[test]
    fn a_public_key_in_another_format_is_never_taken_for_a_secret() {
        let path = Path::new("/nonexistent/key.pub");
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&[7; 32]);
        let jwk =
            br#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let ssh = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFake user@host\n";
        for (contents, said) in [(&der[..], "DER"), (&jwk[..], "JWK"), (&ssh[..], "OpenSSH")] {
            let error = Keys::key(path, contents).err().expect("refused");
            assert!(error.contains(said), "{error}");
        }
    }

    #[test]
    fn a_signature_one_key_cannot_check_leaves_the_next_key_to_try() {
        let other: &[u8] = b"another secret of thirty-two b..";
        let both = Keys {
            keys: vec![
                Key::Hmac(DecodingKey::from_secret(other).expect("key")),
                Key::Hmac(DecodingKey::from_secret(SECRET).expect("key")),
            ],
        };
        let token = hs256(HEADER, &claims(""), SECRET);
        assert!(both.verify(&token, NOW_MS).is_ok());
        let (message, _) = token.rsplit_once('.').expect("three parts");
        for signature in ["", "not base64!", "a+b/c="] {
            assert_eq!(
                both.verify(&format!("{message}.{signature}"), NOW_MS).err(),
                Some(Refusal::Malformed),
                "{signature:?}"
            );
        }
    }

    #[test]
    fn without_a_name_a_long_sub_shows_as_its_first_characters() {
        let sub = "u".repeat(names::MAX_USER_ID);
        let token = hs256(
            HEADER,
            &format!(r#"{{"sub":"{sub}","exp":1800000060,"rooms":{{"lobby":"write"}}}}"#),
            SECRET,
        );
        let identity = keys().verify(&token, NOW_MS).expect("accepted");
        assert_eq!(identity.user, sub);
        assert_eq!(identity.name, "u".repeat(names::MAX_DISPLAY_NAME));
    }

    #[test]
    fn an_ed25519_key_takes_eddsa_only_and_hs256_signed_with_its_bytes_is_refused() {
        let public = include_bytes!("../../tests/fixtures/auth/ed25519-public.pem");
        let private = include_bytes!("../../tests/fixtures/auth/ed25519-private.pem");
        let other = include_bytes!("../../tests/fixtures/auth/other-ed25519-private.pem");
        let keys = Keys {
            keys: vec![Keys::key(Path::new("pub"), public).expect("a public key")],
        };
        let claims = Claims {
            sub: "bo".into(),
            name: None,
            exp: 1_800_000_060,
            iat: 0,
            rooms: BTreeMap::from([("*".to_owned(), "read")]),
        };
        let sign = |pem: &[u8]| Signer {
            key: EncodingKey::from_ed_pem(pem).expect("a private key"),
            algorithm: Algorithm::EdDSA,
        };
        let identity = keys
            .verify(&sign(private).sign(&claims), NOW_MS)
            .expect("ok");
        assert!(identity.grants.may_read("x") && !identity.grants.may_write("x"));
        assert_eq!(
            keys.verify(&sign(other).sign(&claims), NOW_MS),
            Err(Refusal::BadSignature)
        );
        // The confusion attack: HS256 with the public key's bytes as the secret.
        let confused = hs256(HEADER, &super::tests::claims(""), public);
        assert_eq!(
            keys.verify(&confused, NOW_MS),
            Err(Refusal::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn what_the_server_signs_it_accepts() {
        let mut claims = Claims {
            sub: "ana".into(),
            name: Some("Ana".into()),
            exp: 1_800_000_060,
            iat: 1_800_000_000,
            rooms: BTreeMap::new(),
        };
        claims.grant("lobby".into(), Access::Write);
        let token = Signer::with_secret(SECRET).sign(&claims);
        let identity = keys().verify(&token, NOW_MS).expect("accepted");
        assert_eq!(
            (identity.user.as_str(), identity.name.as_str()),
            ("ana", "Ana")
        );
        assert!(Grants::parse_flag("lobby").is_err());
        assert!(Grants::parse_flag("lobby=admin").is_err());
        assert!(Grants::parse_flag("bad room=read").is_err());
        assert_eq!(
            Grants::parse_flag("team.*=read"),
            Ok(("team.*".to_owned(), Access::Read))
        );
    }
}
