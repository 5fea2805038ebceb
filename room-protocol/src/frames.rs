//! The frames of the rooms protocol: one JSON object per WebSocket text frame, its kind in
//! `"type"`.
//!
//! | client → server | server → client |
//! |---|---|
//! | `{"type":"join","room":R}` or with `"since":{"epoch":E,"offset":N}`, `"history":N`, `"presence":true` | `{"type":"joined","room":R,"epoch":E,"offset":N,"recovered":B}`, then with `presence` a snapshot `{"type":"presence","room":R,"count":N,"members":[{"user":U,"name":NAME},...]}` and its changes `{"type":"presence","room":R,"count":N,"joined":[...],"left":[...]}` (past the cap `{"type":"presence","room":R,"count":N,"capped":true}`) |
//! | `{"type":"typing","room":R}` | to the room's other members `{"type":"typing","room":R,"user":U,"name":NAME}` |
//! | `{"type":"leave","room":R}` | `{"type":"left","room":R}`, or with `"reason":"forbidden"` when a refreshed token no longer grants it |
//! | `{"type":"publish","room":R,"id":ID,"text":T}` | `{"type":"ack","room":R,"id":ID,"offset":N}` |
//! | `{"type":"auth","token":JWT}` (first, when the server wants tokens; again to refresh) | `{"type":"authed","user":SUB,"name":NAME,"expires":MS}` |
//! | | `{"type":"message","room":R,"offset":N,"id":ID,"user":USER,"from":NAME,"text":T,"time":MS}` |
//! | | `{"type":"error","code":C,"message":WORDS,"room":R?,"id":ID?}` |
//!
//! A client frame is read in two steps: serde takes any object into a flat [`Request`] whose
//! fields are all optional, then [`Request::into_frame`] checks it by hand. That way a refusal
//! can say exactly what is wrong ("a publish needs an id") and still name the room and id it
//! concerns, which a failed strict parse could not. Unknown fields are ignored, so clients can
//! add their own.

use serde::{Deserialize, Serialize};

use crate::{json, names};

/// A place in a room's history: the epoch (which changes when the history is lost) and the
/// offset of the last message seen in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

/// What a client asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// Join `room`; with `since`, resume after that position. With `history`, a join that
    /// has no `since` or cannot recover it gets the room's last `history` messages replayed
    /// (all it keeps when that is fewer). With `presence`, who is in the room follows
    /// `joined`, then its changes.
    Join {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
        #[serde(skip_serializing_if = "Option::is_none")]
        history: Option<u64>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        presence: bool,
    },
    /// The member is typing in `room`: forwarded to the room's other members, at most once
    /// per [`TYPING_INTERVAL_MS`](crate::bounds::TYPING_INTERVAL_MS) per user and room.
    Typing {
        room: String,
    },
    Leave {
        room: String,
    },
    /// Publish `text` to `room`; `id` is the client's, unique per message, so a resend after
    /// a lost ack is recognised and not broadcast twice.
    Publish {
        room: String,
        id: String,
        text: String,
    },
    /// A signed token (JWT) naming the user and what it may read and write: the first frame
    /// on a server that wants tokens, and again, on the same connection, to refresh it.
    Auth {
        token: String,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// The room's position when the join took effect: `offset` is its last message's (0 for
    /// none). `recovered` is true only when the join gave `since` and every message after it
    /// follows; replayed messages come after this frame.
    Joined {
        room: String,
        epoch: String,
        offset: u64,
        recovered: bool,
    },
    /// One message of the room, in offset order.
    Message {
        room: String,
        offset: u64,
        id: String,
        /// Who published it: the token's `sub`, or a connection's `anon-` id in open mode.
        user: String,
        /// The name it was published under (the token's `name`, or the `?name=` of open mode).
        from: String,
        text: String,
        /// Server time of the publish, milliseconds since the Unix epoch.
        time: u64,
    },
    /// A publish was taken (or had been already, within the dedup window) at `offset`.
    Ack {
        room: String,
        id: String,
        offset: u64,
    },
    /// The connection is no longer in `room`: it asked (no reason), or a refreshed token no
    /// longer lets it read there (`"forbidden"`).
    Left {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A token was accepted: who the connection is, and until when (ms since the Unix epoch).
    Authed {
        user: String,
        name: String,
        expires: u64,
    },
    /// Who is in a room, for a member that joined with `presence`: `count` users (a user
    /// with several connections counts once), then either everyone (`members`: the first
    /// frame after `joined`, the room as the last change told everyone plus the member itself,
    /// and again when the room falls back under the cap), or the net change since the last
    /// frame (`joined`, `left`; a user is in at most one of them), or, past the server's cap,
    /// nothing but `capped`. Apply `joined` and `left` as set operations: a user already
    /// listed may be named again.
    Presence {
        room: String,
        count: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<Vec<PresentUser>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        joined: Option<Vec<PresentUser>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        left: Option<Vec<PresentUser>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        capped: bool,
    },
    /// Another member of `room` is typing.
    Typing {
        room: String,
        user: String,
        name: String,
    },
    /// A request was refused; the connection stays open.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl ServerFrame {
    /// The frame as the text of one WebSocket message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames are plain strings and numbers")
    }

    /// Reads a server frame (clients and tests use this), by hand with [`json`]: the wasm
    /// client carries no serde. Same frames accepted, same refused as the derived
    /// `Deserialize` (a test compares both on a table); unknown fields are ignored.
    pub fn from_json(text: &str) -> Result<ServerFrame, FrameError> {
        let mut value = json::parse(text).map_err(FrameError)?;
        if !matches!(value, json::Value::Object(_)) {
            return Err(FrameError("a server frame is a JSON object".to_owned()));
        }
        let mut string = |name: &'static str| -> Result<String, FrameError> {
            value
                .take(name)
                .and_then(json::Value::into_string)
                .ok_or_else(|| FrameError::field(name))
        };
        let kind = string("type")?;
        let room = string("room");
        let id = string("id");
        let user = string("user");
        let name = string("name");
        let optional = |field: Result<String, FrameError>| field.ok();
        let (epoch, from, text, message, reason, code) = (
            string("epoch"),
            string("from"),
            string("text"),
            string("message"),
            string("reason"),
            string("code"),
        );
        let number = |name: &'static str| {
            value
                .get(name)
                .and_then(json::Value::as_u64)
                .ok_or_else(|| FrameError::field(name))
        };
        let flag = |name: &'static str| value.get(name).and_then(json::Value::as_bool);
        let users = |name: &'static str| -> Result<Option<Vec<PresentUser>>, FrameError> {
            match value.get(name) {
                None | Some(json::Value::Null) => Ok(None),
                Some(list) => PresentUser::list_from(list)
                    .map(Some)
                    .ok_or_else(|| FrameError::field(name)),
            }
        };
        Ok(match kind.as_str() {
            "joined" => ServerFrame::Joined {
                room: room?,
                epoch: epoch?,
                offset: number("offset")?,
                recovered: flag("recovered").ok_or_else(|| FrameError::field("recovered"))?,
            },
            "message" => ServerFrame::Message {
                room: room?,
                offset: number("offset")?,
                id: id?,
                user: user?,
                from: from?,
                text: text?,
                time: number("time")?,
            },
            "ack" => ServerFrame::Ack {
                room: room?,
                id: id?,
                offset: number("offset")?,
            },
            "left" => ServerFrame::Left {
                room: room?,
                reason: optional(reason),
            },
            "authed" => ServerFrame::Authed {
                user: user?,
                name: name?,
                expires: number("expires")?,
            },
            "presence" => ServerFrame::Presence {
                room: room?,
                count: number("count")?,
                members: users("members")?,
                joined: users("joined")?,
                left: users("left")?,
                capped: flag("capped").unwrap_or(false),
            },
            "typing" => ServerFrame::Typing {
                room: room?,
                user: user?,
                name: name?,
            },
            "error" => ServerFrame::Error {
                code: ErrorCode::named(&code?).ok_or_else(|| FrameError::field("code"))?,
                message: message?,
                room: optional(room),
                id: optional(id),
            },
            other => {
                return Err(FrameError(format!(
                    "unknown frame type {other:?}: joined, message, ack, left, authed, presence, typing or error"
                )));
            }
        })
    }
}

/// Why a text is not a server frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(String);

impl FrameError {
    fn field(name: &str) -> FrameError {
        FrameError(format!("a missing or malformed field {name:?}"))
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

impl ClientFrame {
    /// The frame as the text of one WebSocket message, written by hand with [`json`] (the
    /// wasm client carries no serde): the same text as the derived `Serialize` writes (a
    /// test compares both).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let mut frame = json::ObjectWriter::new(&mut out);
        match self {
            ClientFrame::Join {
                room,
                since,
                history,
                presence,
            } => {
                frame.string("type", "join").string("room", room);
                if let Some(since) = since {
                    frame.raw("since", |out| {
                        json::ObjectWriter::new(out)
                            .string("epoch", &since.epoch)
                            .number("offset", since.offset)
                            .end();
                    });
                }
                if let Some(history) = history {
                    frame.number("history", *history);
                }
                if *presence {
                    frame.bool("presence", true);
                }
            }
            ClientFrame::Typing { room } => {
                frame.string("type", "typing").string("room", room);
            }
            ClientFrame::Leave { room } => {
                frame.string("type", "leave").string("room", room);
            }
            ClientFrame::Publish { room, id, text } => {
                frame
                    .string("type", "publish")
                    .string("room", room)
                    .string("id", id)
                    .string("text", text);
            }
            ClientFrame::Auth { token } => {
                frame.string("type", "auth").string("token", token);
            }
        }
        frame.end();
        out
    }
}

/// A user in a room's presence: its id (a token's `sub`, or the `anon-` id of open mode) and
/// the name others see.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PresentUser {
    pub user: String,
    pub name: String,
}

impl PresentUser {
    /// A JSON list of `{"user":U,"name":N}` objects; `None` if anything in it is not one.
    fn list_from(list: &json::Value) -> Option<Vec<PresentUser>> {
        list.as_array()?
            .iter()
            .map(|item| {
                Some(PresentUser {
                    user: item.get("user")?.as_str()?.to_owned(),
                    name: item.get("name")?.as_str()?.to_owned(),
                })
            })
            .collect()
    }
}

/// Why a request was refused, as the `code` of an error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, an unknown type, a missing or malformed field.
    BadRequest,
    /// A room name outside the rules of [`names::is_room_name`].
    BadRoom,
    /// A publish or leave for a room this connection has not joined.
    NotJoined,
    /// A join past the most rooms one connection may be in.
    TooManyRooms,
    /// A text longer than the server accepts.
    TooLong,
    /// Publishing faster than the server allows.
    RateLimited,
    /// The engine cannot take the request now (its store is unreachable): send it again later.
    Unavailable,
    /// The connection's token does not grant this: a join of a room it may not read, a
    /// publish to a room it may only read.
    Forbidden,
}

impl ErrorCode {
    /// The code named `name` in an error frame (its snake_case name).
    pub fn named(name: &str) -> Option<ErrorCode> {
        Some(match name {
            "bad_request" => ErrorCode::BadRequest,
            "bad_room" => ErrorCode::BadRoom,
            "not_joined" => ErrorCode::NotJoined,
            "too_many_rooms" => ErrorCode::TooManyRooms,
            "too_long" => ErrorCode::TooLong,
            "rate_limited" => ErrorCode::RateLimited,
            "unavailable" => ErrorCode::Unavailable,
            "forbidden" => ErrorCode::Forbidden,
            _ => return None,
        })
    }
}

/// A refusal: what goes into an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: ErrorCode,
    pub message: String,
    pub room: Option<String>,
    pub id: Option<String>,
}

impl Problem {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
            room: None,
            id: None,
        }
    }

    /// The same problem, naming the room and message it concerns.
    pub fn about(mut self, room: Option<&str>, id: Option<&str>) -> Problem {
        self.room = room.map(str::to_owned);
        self.id = id.map(str::to_owned);
        self
    }

    pub fn into_frame(self) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: self.message,
            room: self.room,
            id: self.id,
        }
    }
}

/// Any JSON object, before it is checked: every field optional.
#[derive(Debug, Default, Deserialize)]
struct Request {
    #[serde(rename = "type")]
    kind: Option<String>,
    room: Option<String>,
    id: Option<String>,
    text: Option<String>,
    since: Option<Position>,
    token: Option<String>,
    history: Option<u64>,
    presence: Option<bool>,
}

/// Reads and checks one client frame. The text length is not checked here: its limit is the
/// server's setting (`too_long`).
pub fn parse_client(text: &str) -> Result<ClientFrame, Problem> {
    let request: Request = serde_json::from_str(text).map_err(|error| {
        let what = if error.is_data() {
            // Valid JSON of the wrong shape: a field of the wrong type, or not an object.
            format!("malformed request: {error}")
        } else {
            "not a JSON object".to_owned()
        };
        Problem::new(ErrorCode::BadRequest, what)
    })?;
    request.into_frame()
}

impl Request {
    fn into_frame(self) -> Result<ClientFrame, Problem> {
        let Request {
            kind,
            room,
            id,
            text,
            since,
            token,
            history,
            presence,
        } = self;
        let about = |problem: Problem| problem.about(room.as_deref(), id.as_deref());
        let kind = kind.ok_or_else(|| {
            about(Problem::new(
                ErrorCode::BadRequest,
                "a request needs a \"type\": join, leave, publish, typing or auth",
            ))
        })?;
        if !matches!(
            kind.as_str(),
            "join" | "leave" | "publish" | "typing" | "auth"
        ) {
            return Err(about(Problem::new(
                ErrorCode::BadRequest,
                format!("unknown type {kind:?}: join, leave, publish, typing or auth"),
            )));
        }
        if kind == "auth" {
            // Never echoed: a refusal of an auth frame never holds the token.
            return match token {
                Some(token) => Ok(ClientFrame::Auth { token }),
                None => Err(Problem::new(
                    ErrorCode::BadRequest,
                    "an auth needs a \"token\"",
                )),
            };
        }
        let Some(room_name) = room.as_deref() else {
            return Err(about(Problem::new(
                ErrorCode::BadRequest,
                format!("a {kind} needs a \"room\""),
            )));
        };
        if !names::is_room_name(room_name) {
            return Err(about(Problem::new(
                ErrorCode::BadRoom,
                "a room name is 1 to 64 of A-Z a-z 0-9 _ . : -",
            )));
        }
        match kind.as_str() {
            "join" => Ok(ClientFrame::Join {
                room: room_name.to_owned(),
                since,
                history,
                presence: presence.unwrap_or(false),
            }),
            "typing" => Ok(ClientFrame::Typing {
                room: room_name.to_owned(),
            }),
            "leave" => Ok(ClientFrame::Leave {
                room: room_name.to_owned(),
            }),
            _publish => {
                let Some(message_id) = id.as_deref() else {
                    return Err(about(Problem::new(
                        ErrorCode::BadRequest,
                        "a publish needs an \"id\"",
                    )));
                };
                if !names::is_message_id(message_id) {
                    return Err(about(Problem::new(
                        ErrorCode::BadRequest,
                        format!(
                            "a message id is 1 to {} characters, {}",
                            names::MAX_MESSAGE_ID,
                            names::REFUSED_CHARACTERS
                        ),
                    )));
                }
                let Some(text) = text else {
                    return Err(about(Problem::new(
                        ErrorCode::BadRequest,
                        "a publish needs a \"text\"",
                    )));
                };
                Ok(ClientFrame::Publish {
                    room: room_name.to_owned(),
                    id: message_id.to_owned(),
                    text,
                })
            }
        }
    }
}

/// A message frame cut at its offset and its time, for an engine that learns both elsewhere
/// (Redis draws the offset and reads its own clock inside its publish script): `head`, the
/// offset in decimal, `middle`, the time in decimal, then `}` is exactly the text of
/// [`ServerFrame::Message`] with that offset and time (`time` is its last field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAroundOffset {
    pub head: String,
    pub middle: String,
}

impl MessageAroundOffset {
    /// Built piece by piece into buffers of the right size, not with `format!` around four
    /// JSON strings made apart: a server makes one per publish, and that way cost about a
    /// sixth of a publish's instructions (callgrind: 3,400 of 19,700).
    pub fn new(room: &str, id: &str, user: &str, from: &str, text: &str) -> MessageAroundOffset {
        let mut head = Vec::with_capacity(40 + room.len());
        head.extend_from_slice(br#"{"type":"message","room":"#);
        push_json_string(&mut head, room);
        head.extend_from_slice(br#","offset":"#);
        let mut middle = Vec::with_capacity(50 + id.len() + user.len() + from.len() + text.len());
        middle.extend_from_slice(br#","id":"#);
        push_json_string(&mut middle, id);
        middle.extend_from_slice(br#","user":"#);
        push_json_string(&mut middle, user);
        middle.extend_from_slice(br#","from":"#);
        push_json_string(&mut middle, from);
        middle.extend_from_slice(br#","text":"#);
        push_json_string(&mut middle, text);
        middle.extend_from_slice(br#","time":"#);
        let utf8 = |bytes: Vec<u8>| String::from_utf8(bytes).expect("JSON text is UTF-8");
        MessageAroundOffset {
            head: utf8(head),
            middle: utf8(middle),
        }
    }

    /// The whole frame with `offset` and `time` in their places.
    pub fn frame(&self, offset: u64, time: u64) -> String {
        let (mut offset_digits, mut time_digits) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (offset, time) = (offset_digits.format(offset), time_digits.format(time));
        let mut frame = String::with_capacity(
            self.head.len() + offset.len() + self.middle.len() + time.len() + 1,
        );
        frame.push_str(&self.head);
        frame.push_str(offset);
        frame.push_str(&self.middle);
        frame.push_str(time);
        frame.push('}');
        frame
    }
}

/// `value` as a JSON string, escaped as serde_json escapes it, appended to `out`.
fn push_json_string(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("a string always serializes to JSON");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_cut_at_its_offset_and_time_is_the_same_frame_once_both_are_put_back() {
        let cases = [
            ("lobby", "id-1", "ana", "hello", 1_700_000_000_000),
            (
                "a:b.c-d_e",
                "\u{1F600}\"quoted\"",
                "b\\o",
                "line\nbreak \"offset\":0,",
                0,
            ),
            ("r", "x", "y", "", u64::MAX),
        ];
        for (room, id, from, text, time) in cases {
            let user = format!("u\"{from}");
            let cut = MessageAroundOffset::new(room, id, &user, from, text);
            for offset in [1, 42, u64::MAX] {
                let whole = ServerFrame::Message {
                    room: room.to_owned(),
                    offset,
                    id: id.to_owned(),
                    user: user.clone(),
                    from: from.to_owned(),
                    text: text.to_owned(),
                    time,
                };
                assert_eq!(cut.frame(offset, time), whole.to_json());
                assert_eq!(
                    ServerFrame::from_json(&cut.frame(offset, time)).ok(),
                    Some(whole)
                );
            }
        }
    }

    fn present(user: &str, name: &str) -> PresentUser {
        PresentUser {
            user: user.into(),
            name: name.into(),
        }
    }

    fn join(room: &str) -> ClientFrame {
        ClientFrame::Join {
            room: room.into(),
            since: None,
            history: None,
            presence: false,
        }
    }

    #[test]
    fn good_requests_parse() {
        let table: &[(&str, ClientFrame)] = &[
            (r#"{"type":"join","room":"lobby"}"#, join("lobby")),
            (
                r#"{"type":"join","room":"lobby","since":{"epoch":"e1","offset":41}}"#,
                ClientFrame::Join {
                    room: "lobby".into(),
                    since: Some(Position {
                        epoch: "e1".into(),
                        offset: 41,
                    }),
                    history: None,
                    presence: false,
                },
            ),
            (
                r#"{"type":"join","room":"lobby","history":50,"presence":true}"#,
                ClientFrame::Join {
                    room: "lobby".into(),
                    since: None,
                    history: Some(50),
                    presence: true,
                },
            ),
            (
                r#"{"type":"typing","room":"lobby"}"#,
                ClientFrame::Typing {
                    room: "lobby".into(),
                },
            ),
            (
                r#"{"type":"leave","room":"a.b:c-d_9"}"#,
                ClientFrame::Leave {
                    room: "a.b:c-d_9".into(),
                },
            ),
            (
                r#"{"type":"publish","room":"lobby","id":"x1","text":"hello","extra":[1]}"#,
                ClientFrame::Publish {
                    room: "lobby".into(),
                    id: "x1".into(),
                    text: "hello".into(),
                },
            ),
            (
                r#"{"type":"publish","room":"lobby","id":"x1","text":""}"#,
                ClientFrame::Publish {
                    room: "lobby".into(),
                    id: "x1".into(),
                    text: String::new(),
                },
            ),
            (
                r#"{"type":"auth","token":"a.b.c","room":"ignored"}"#,
                ClientFrame::Auth {
                    token: "a.b.c".into(),
                },
            ),
        ];
        for (text, expected) in table {
            assert_eq!(parse_client(text).as_ref(), Ok(expected), "{text}");
            // What a client encodes, the server reads back the same.
            let encoded = serde_json::to_string(expected).expect("encodes");
            assert_eq!(parse_client(&encoded).as_ref(), Ok(expected), "{encoded}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong_and_name_room_and_id() {
        let long_room = "r".repeat(65);
        let long_id = "i".repeat(65);
        let table: Vec<(String, ErrorCode, Option<&str>, Option<&str>)> = vec![
            ("not json".into(), ErrorCode::BadRequest, None, None),
            ("[1,2]".into(), ErrorCode::BadRequest, None, None),
            ("\"join\"".into(), ErrorCode::BadRequest, None, None),
            ("{}".into(), ErrorCode::BadRequest, None, None),
            (r#"{"type":7}"#.into(), ErrorCode::BadRequest, None, None),
            (
                r#"{"type":"shout","room":"lobby"}"#.into(),
                ErrorCode::BadRequest,
                Some("lobby"),
                None,
            ),
            (
                r#"{"type":"join"}"#.into(),
                ErrorCode::BadRequest,
                None,
                None,
            ),
            (
                r#"{"type":"join","room":""}"#.into(),
                ErrorCode::BadRoom,
                Some(""),
                None,
            ),
            (
                r#"{"type":"join","room":"a b"}"#.into(),
                ErrorCode::BadRoom,
                Some("a b"),
                None,
            ),
            (
                r#"{"type":"join","room":"é"}"#.into(),
                ErrorCode::BadRoom,
                Some("é"),
                None,
            ),
            (
                format!(r#"{{"type":"join","room":"{long_room}"}}"#),
                ErrorCode::BadRoom,
                Some(long_room.as_str()),
                None,
            ),
            (
                r#"{"type":"join","room":"lobby","since":{"epoch":"e"}}"#.into(),
                ErrorCode::BadRequest,
                None,
                None,
            ),
            (
                r#"{"type":"join","room":"lobby","since":{"epoch":"e","offset":-1}}"#.into(),
                ErrorCode::BadRequest,
                None,
                None,
            ),
            (
                r#"{"type":"publish","room":"lobby","text":"hi"}"#.into(),
                ErrorCode::BadRequest,
                Some("lobby"),
                None,
            ),
            (
                r#"{"type":"publish","room":"lobby","id":"","text":"hi"}"#.into(),
                ErrorCode::BadRequest,
                Some("lobby"),
                Some(""),
            ),
            (
                format!(r#"{{"type":"publish","room":"lobby","id":"{long_id}","text":"hi"}}"#),
                ErrorCode::BadRequest,
                Some("lobby"),
                Some(long_id.as_str()),
            ),
            (
                r#"{"type":"publish","room":"lobby","id":"a\u0007","text":"hi"}"#.into(),
                ErrorCode::BadRequest,
                Some("lobby"),
                Some("a\u{7}"),
            ),
            (
                r#"{"type":"publish","room":"lobby","id":"m1"}"#.into(),
                ErrorCode::BadRequest,
                Some("lobby"),
                Some("m1"),
            ),
            (
                r#"{"type":"publish","room":"bad room","id":"m1","text":"x"}"#.into(),
                ErrorCode::BadRoom,
                Some("bad room"),
                Some("m1"),
            ),
            (
                r#"{"type":"auth"}"#.into(),
                ErrorCode::BadRequest,
                None,
                None,
            ),
        ];
        for (text, code, room, id) in table {
            let problem = parse_client(&text).expect_err(&text);
            assert_eq!(problem.code, code, "{text}: {}", problem.message);
            assert_eq!(problem.room.as_deref(), room, "{text}");
            assert_eq!(problem.id.as_deref(), id, "{text}");
            assert!(!problem.message.is_empty(), "{text}");
        }
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let table = [
            (
                ServerFrame::Joined {
                    room: "lobby".into(),
                    epoch: "E".into(),
                    offset: 44,
                    recovered: true,
                },
                r#"{"type":"joined","room":"lobby","epoch":"E","offset":44,"recovered":true}"#,
            ),
            (
                ServerFrame::Message {
                    room: "lobby".into(),
                    offset: 45,
                    id: "ID".into(),
                    user: "u-1".into(),
                    from: "ana".into(),
                    text: "hello".into(),
                    time: 1_764_400_000_123,
                },
                r#"{"type":"message","room":"lobby","offset":45,"id":"ID","user":"u-1","from":"ana","text":"hello","time":1764400000123}"#,
            ),
            (
                ServerFrame::Ack {
                    room: "lobby".into(),
                    id: "ID".into(),
                    offset: 45,
                },
                r#"{"type":"ack","room":"lobby","id":"ID","offset":45}"#,
            ),
            (
                ServerFrame::Left {
                    room: "lobby".into(),
                    reason: None,
                },
                r#"{"type":"left","room":"lobby"}"#,
            ),
            (
                ServerFrame::Left {
                    room: "lobby".into(),
                    reason: Some("forbidden".into()),
                },
                r#"{"type":"left","room":"lobby","reason":"forbidden"}"#,
            ),
            (
                ServerFrame::Authed {
                    user: "ana-1".into(),
                    name: "Ana".into(),
                    expires: 1_764_400_000_000,
                },
                r#"{"type":"authed","user":"ana-1","name":"Ana","expires":1764400000000}"#,
            ),
            (
                ServerFrame::Presence {
                    room: "R".into(),
                    count: 2,
                    members: Some(vec![present("ana", "Ana"), present("bo", "Bo")]),
                    joined: None,
                    left: None,
                    capped: false,
                },
                r#"{"type":"presence","room":"R","count":2,"members":[{"user":"ana","name":"Ana"},{"user":"bo","name":"Bo"}]}"#,
            ),
            (
                ServerFrame::Presence {
                    room: "R".into(),
                    count: 3,
                    members: None,
                    joined: Some(vec![present("cy", "Cy")]),
                    left: Some(vec![]),
                    capped: false,
                },
                r#"{"type":"presence","room":"R","count":3,"joined":[{"user":"cy","name":"Cy"}],"left":[]}"#,
            ),
            (
                ServerFrame::Presence {
                    room: "R".into(),
                    count: 1001,
                    members: None,
                    joined: None,
                    left: None,
                    capped: true,
                },
                r#"{"type":"presence","room":"R","count":1001,"capped":true}"#,
            ),
            (
                ServerFrame::Typing {
                    room: "R".into(),
                    user: "ana".into(),
                    name: "Ana".into(),
                },
                r#"{"type":"typing","room":"R","user":"ana","name":"Ana"}"#,
            ),
            (
                Problem::new(ErrorCode::Forbidden, "read only")
                    .about(Some("news"), Some("ID"))
                    .into_frame(),
                r#"{"type":"error","code":"forbidden","message":"read only","room":"news","id":"ID"}"#,
            ),
            (
                Problem::new(ErrorCode::RateLimited, "slow down")
                    .about(Some("lobby"), Some("ID"))
                    .into_frame(),
                r#"{"type":"error","code":"rate_limited","message":"slow down","room":"lobby","id":"ID"}"#,
            ),
            (
                Problem::new(ErrorCode::BadRequest, "not a JSON object").into_frame(),
                r#"{"type":"error","code":"bad_request","message":"not a JSON object"}"#,
            ),
        ];
        for (frame, json) in table {
            assert_eq!(frame.to_json(), json);
            assert_eq!(ServerFrame::from_json(json).expect("parses"), frame);
        }
    }

    #[test]
    fn the_flat_decode_accepts_and_refuses_what_the_derived_one_does() {
        let table = [
            (
                r#"{"type":"joined","room":"r","epoch":"E","offset":0,"recovered":false}"#,
                true,
            ),
            (
                r#"{"type":"ack","room":"r","id":"i","offset":1,"extra":[1,{"a":2}]}"#,
                true,
            ),
            (r#"{"type":"left","room":"r"}"#, true),
            (r#"{"type":"left","room":"r","reason":"forbidden"}"#, true),
            (
                r#"{"type":"presence","room":"r","count":2,"members":[{"user":"u","name":"N","x":1}],"capped":false}"#,
                true,
            ),
            (
                r#"{"type":"presence","room":"r","count":2,"members":[{"user":"u"}]}"#,
                false,
            ),
            (
                r#"{"type":"presence","room":"r","count":2,"left":{}}"#,
                false,
            ),
            (
                r#"{"type":"presence","room":"r","count":2,"members":null}"#,
                true,
            ),
            (
                r#"{"type":"typing","room":"r","user":"u","name":"N"}"#,
                true,
            ),
            (
                r#"{"type":"authed","user":"u","name":"N","expires":1}"#,
                true,
            ),
            (
                r#"{"type":"authed","user":"u","name":"N","expires":1.5}"#,
                false,
            ),
            (r#"{"type":"error","code":"too_long","message":"m"}"#, true),
            (
                r#"{"type":"error","code":"too_long","message":"m","room":null}"#,
                true,
            ),
            (
                r#"{"type":"joined","room":"r","epoch":"E","offset":0}"#,
                false,
            ),
            (
                r#"{"type":"message","room":"r","offset":1,"id":"i","from":"f","text":"t"}"#,
                false,
            ),
            (
                r#"{"type":"message","room":"r","offset":-1,"id":"i","from":"f","text":"t","time":0}"#,
                false,
            ),
            (r#"{"type":"ack","room":"r","id":7,"offset":1}"#, false),
            (r#"{"type":"error","code":"shouting","message":"m"}"#, false),
            (r#"{"type":"shout","room":"r"}"#, false),
            (r#"{"room":"r"}"#, false),
            (r#"[1,2]"#, false),
            ("not json", false),
        ];
        for (json, good) in table {
            let flat = ServerFrame::from_json(json);
            let derived = serde_json::from_str::<ServerFrame>(json);
            assert_eq!(flat.is_ok(), good, "{json}: {flat:?}");
            assert_eq!(flat.ok(), derived.ok(), "{json}");
        }
    }

    #[test]
    fn client_frames_are_written_as_serde_writes_them_and_read_back_by_the_server() {
        let frames = [
            ClientFrame::Join {
                room: "lobby".into(),
                since: None,
                history: None,
                presence: false,
            },
            ClientFrame::Join {
                room: "a:b".into(),
                since: Some(Position {
                    epoch: "E\"1".into(),
                    offset: u64::MAX,
                }),
                history: Some(50),
                presence: true,
            },
            ClientFrame::Typing { room: "r".into() },
            ClientFrame::Leave { room: "r".into() },
            ClientFrame::Publish {
                room: "r".into(),
                id: "id-1".into(),
                text: "line\nbreak \"quoted\" \u{1} \u{202e}😀".into(),
            },
            ClientFrame::Auth {
                token: "a.b.c".into(),
            },
        ];
        for frame in frames {
            let written = frame.to_json();
            assert_eq!(
                written,
                serde_json::to_string(&frame).expect("encodes"),
                "{frame:?}"
            );
            assert_eq!(parse_client(&written), Ok(frame));
        }
    }

    #[test]
    fn every_error_code_has_its_snake_case_name() {
        let names = [
            (ErrorCode::BadRequest, "bad_request"),
            (ErrorCode::BadRoom, "bad_room"),
            (ErrorCode::NotJoined, "not_joined"),
            (ErrorCode::TooManyRooms, "too_many_rooms"),
            (ErrorCode::TooLong, "too_long"),
            (ErrorCode::RateLimited, "rate_limited"),
            (ErrorCode::Unavailable, "unavailable"),
            (ErrorCode::Forbidden, "forbidden"),
        ];
        for (code, name) in names {
            assert_eq!(
                serde_json::to_string(&code).expect("encodes"),
                format!("\"{name}\"")
            );
            assert_eq!(ErrorCode::named(name), Some(code));
        }
        assert_eq!(ErrorCode::named("Bad_Request"), None);
    }
}
