//! The Lua scripts the Redis broker runs, and how their answers are read. Each script is one
//! atomic step; time comes from Redis's own clock (`TIME`), so every instance stamps messages
//! and draws epochs from one clock, and an epoch drawn later sorts after (`compare_epochs`).

use hyper_tungstenite::tungstenite::Utf8Bytes;
use redis::Value;

use crate::outgoing::QueuedText;
use crate::rooms::{Entry, Snapshot};

/// What every script starts with: Redis's clock in ms (`now`), and an epoch drawn now
/// (`new_epoch`: 12 hex digits of ms, then the random digits given), so epochs drawn later
/// sort after.
const CLOCK: &str = r"
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local function new_epoch(random) return string.format('%012x', now) .. random end
";

/// The publish script, with the clock.
pub(super) fn publish() -> String {
    format!("{CLOCK}{PUBLISH}")
}

/// The read script, with the clock.
pub(super) fn read() -> String {
    format!("{CLOCK}{READ}")
}

/// One publish, atomically: dedup, offset, stream, expiries, `PUBLISH`. Returns `{taken,
/// offset}`: `taken` 0 when the id was known (its first offset comes back).
///
/// The history is trimmed oldest first to `--room-history` messages and `--room-history-bytes`
/// bytes of frames (the meta hash keeps the byte count); its age is bounded by the stream's
/// expiry and by the hub, which replays nothing older than `--room-history-ttl`.
///
/// KEYS: meta, log, dedup key. ARGV: 8 random hex digits (for a new epoch), history length,
/// history TTL ms, meta TTL ms, dedup window ms, frame head, frame middle, channel, history
/// bytes.
const PUBLISH: &str = r"
local known = redis.call('GET', KEYS[3])
if known then return {0, tonumber(known)} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = new_epoch(ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local frame = ARGV[6] .. offset .. ARGV[7] .. now .. '}'
local most = tonumber(ARGV[2])
local most_bytes = tonumber(ARGV[9])
if most > 0 then
  local count = redis.call('XLEN', KEYS[2])
  local bytes = 0
  if count > 0 then bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0') end
  redis.call('XADD', KEYS[2], offset .. '-0', 't', now, 'f', frame)
  count = count + 1
  bytes = bytes + #frame
  while count > 0 and (count > most or bytes > most_bytes) do
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    bytes = bytes - #oldest[2][4]
    redis.call('XDEL', KEYS[2], oldest[1])
    count = count - 1
  end
  redis.call('HSET', KEYS[1], 'bytes', bytes)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[3], offset, 'PX', ARGV[5])
redis.call('PUBLISH', ARGV[8], epoch .. ' ' .. offset .. ' ' .. frame)
return {1, offset}
";

/// A room's epoch, last offset, and the entries after a position of that epoch, or, for
/// another epoch or a position past the room's last, its newest `history` entries (a join's
/// recent history), as one snapshot, with Redis's time. A room without meta gets one here
/// (its epoch must outlive the join, for every instance); [`FORGET`] takes it away again when
/// the room empties without a message.
///
/// KEYS: meta, log. ARGV: 8 random hex digits, meta TTL ms, the position's epoch ('' for
/// none), its offset, how many of the newest entries to read otherwise.
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = new_epoch(ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local entries = {}
if epoch == ARGV[3] and tonumber(ARGV[4]) < top then
  entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[4] .. '-0', '+')
elseif tonumber(ARGV[5]) > 0 then
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[5])
  for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
end
return {epoch, top, entries, now}
";

/// A room this instance no longer holds: if nobody published in it and no instance
/// subscribes to it any more, its meta goes, so joins leave nothing behind. A join elsewhere
/// subscribes before it reads, so it either keeps the meta here or makes a new one after.
///
/// KEYS: meta. ARGV: channel.
pub(super) const FORGET: &str = r"
local top = redis.call('HGET', KEYS[1], 'top')
if top and tonumber(top) > 0 then return 0 end
local listeners = redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2]
if listeners > 0 then return 0 end
return redis.call('DEL', KEYS[1])
";

/// `epoch offset frame`, as the publish script sends it.
pub(super) fn parse_published(payload: &str) -> Option<(&str, u64, &str)> {
    let mut parts = payload.splitn(3, ' ');
    let epoch = parts.next()?;
    // Offsets count from 1.
    let offset = parts.next()?.parse().ok().filter(|offset| *offset > 0)?;
    let frame = parts.next()?;
    Some((epoch, offset, frame))
}

/// `{epoch, top, entries, now}` as the read script answers, each entry `[id, [field, value, ...]]`.
pub(super) fn snapshot(value: Value) -> Option<Snapshot> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [epoch, top, entries, now]: [Value; 4] = parts.try_into().ok()?;
    let epoch = text(epoch)?;
    let top = match top {
        Value::Int(top) => u64::try_from(top).ok()?,
        _ => return None,
    };
    let now_ms = match now {
        Value::Int(now) => u64::try_from(now).ok()?,
        _ => return None,
    };
    let Value::Array(entries) = entries else {
        return None;
    };
    let entries = entries
        .into_iter()
        .map(entry)
        .collect::<Option<Vec<Entry>>>()?;
    Some(Snapshot {
        epoch,
        top,
        entries,
        now_ms,
    })
}

fn entry(value: Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [id, fields]: [Value; 2] = parts.try_into().ok()?;
    let offset = text(id)?.strip_suffix("-0")?.parse().ok()?;
    let Value::Array(fields) = fields else {
        return None;
    };
    let mut time_ms = None;
    let mut frame = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match text(name)?.as_str() {
            "t" => time_ms = text(value)?.parse().ok(),
            "f" => frame = text(value),
            _ => {}
        }
    }
    Some(Entry {
        offset,
        time_ms: time_ms?,
        frame: QueuedText::shared(Utf8Bytes::from(frame?)),
    })
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_published_message_is_epoch_offset_frame_and_the_frame_may_hold_spaces() {
        assert_eq!(
            parse_published(r#"e1 42 {"text":"a b c"}"#),
            Some(("e1", 42, r#"{"text":"a b c"}"#))
        );
        for broken in ["", "e1", "e1 x {}", "e1 42", "e1 -1 {}", "e1 0 {}"] {
            assert_eq!(parse_published(broken), None, "{broken:?}");
        }
    }

    #[test]
    fn a_snapshot_is_read_from_the_script_answer_and_anything_else_is_refused() {
        let answer = Value::Array(vec![
            bulk("epoch"),
            Value::Int(7),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("6-0"),
                    Value::Array(vec![bulk("t"), bulk("1000"), bulk("f"), bulk("{}")]),
                ]),
                Value::Array(vec![
                    bulk("7-0"),
                    Value::Array(vec![bulk("f"), bulk("{\"a\":1}"), bulk("t"), bulk("2000")]),
                ]),
            ]),
            Value::Int(3000),
        ]);
        let read = snapshot(answer).expect("a snapshot");
        assert_eq!(
            (read.epoch.as_str(), read.top, read.now_ms),
            ("epoch", 7, 3000)
        );
        let entries: Vec<(u64, u64, &str)> = read
            .entries
            .iter()
            .map(|entry| (entry.offset, entry.time_ms, entry.frame.text().as_str()))
            .collect();
        assert_eq!(entries, [(6, 1000, "{}"), (7, 2000, "{\"a\":1}")]);
        let empty = || Value::Array(vec![]);
        let broken = [
            Value::Nil,
            Value::Array(vec![bulk("epoch"), Value::Int(-1), empty(), Value::Int(1)]),
            Value::Array(vec![bulk("epoch"), Value::Int(1), empty()]),
            Value::Array(vec![bulk("epoch"), Value::Int(1), empty(), bulk("x")]),
            Value::Array(vec![
                bulk("epoch"),
                Value::Int(1),
                Value::Array(vec![Value::Array(vec![
                    bulk("1-5"),
                    Value::Array(vec![bulk("t"), bulk("1"), bulk("f"), bulk("{}")]),
                ])]),
                Value::Int(1),
            ]),
            Value::Array(vec![
                bulk("epoch"),
                Value::Int(1),
                Value::Array(vec![Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("t"), bulk("1")]),
                ])]),
                Value::Int(1),
            ]),
        ];
        for value in broken {
            assert!(snapshot(value.clone()).is_none(), "{value:?}");
        }
    }
}
