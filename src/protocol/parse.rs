//! Client frames into [`Request`]s; every refusal is a [`RequestError`]
//! that echoes the request's `id` when it could be read.

use super::{position, ErrorCode, Request, RequestError, MAX_ID_BYTES};
use serde_json::{Map, Value};

/// Parses one client text frame.
pub fn parse_request(text: &str) -> Result<Request, RequestError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        RequestError::new(None, ErrorCode::InvalidJson, format!("not valid JSON: {e}"))
    })?;
    let Value::Object(mut obj) = value else {
        return Err(RequestError::new(
            None,
            ErrorCode::InvalidJson,
            "a request must be a JSON object",
        ));
    };
    let id = take_id(&mut obj)?;
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`type` must be a string",
            ))
        }
        None => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`type` is missing",
            ))
        }
    };
    match kind {
        "subscribe" => Ok(Request::Subscribe {
            channels: take_channels(&mut obj, &id)?,
            since: position::parse_since(obj.remove("since"), &id)?,
            id,
        }),
        "unsubscribe" => Ok(Request::Unsubscribe {
            channels: take_channels(&mut obj, &id)?,
            id,
        }),
        "ping" => Ok(Request::Ping { id }),
        "publish" => parse_publish(obj, id),
        "history" => parse_history(obj, id),
        "refresh" => match obj.remove("token") {
            Some(Value::String(token)) => Ok(Request::Refresh { id, token }),
            _ => Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`token` must be a string",
            )),
        },
        other => {
            let shown: String = other.chars().take(40).collect();
            Err(RequestError::new(
                id,
                ErrorCode::UnknownType,
                format!("unknown type `{shown}`"),
            ))
        }
    }
}

fn parse_publish(mut obj: Map<String, Value>, id: Option<String>) -> Result<Request, RequestError> {
    let channel = match obj.remove("channel") {
        Some(Value::String(c)) => c,
        _ => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`channel` must be a string",
            ))
        }
    };
    let payload = match obj.remove("data") {
        None => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`data` is missing",
            ))
        }
        Some(Value::String(s)) => s.into_bytes(),
        Some(other) => serde_json::to_vec(&other).unwrap_or_default(),
    };
    Ok(Request::Publish {
        id,
        channel,
        payload,
    })
}

fn parse_history(mut obj: Map<String, Value>, id: Option<String>) -> Result<Request, RequestError> {
    let invalid = |msg: &str| RequestError::new(id.clone(), ErrorCode::InvalidField, msg);
    let Some(Value::String(channel)) = obj.remove("channel") else {
        return Err(invalid("`channel` must be a string"));
    };
    let limit = match obj.remove("limit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| invalid("`limit` must be a positive integer"))?,
        ),
    };
    Ok(Request::History { id, channel, limit })
}

fn take_id(obj: &mut Map<String, Value>) -> Result<Option<String>, RequestError> {
    match obj.remove("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_ID_BYTES => Ok(Some(s)),
        Some(Value::String(_)) => Err(RequestError::new(
            None,
            ErrorCode::InvalidField,
            format!("`id` must be at most {MAX_ID_BYTES} bytes"),
        )),
        Some(_) => Err(RequestError::new(
            None,
            ErrorCode::InvalidField,
            "`id` must be a string",
        )),
    }
}

fn take_channels(
    obj: &mut Map<String, Value>,
    id: &Option<String>,
) -> Result<Vec<String>, RequestError> {
    let invalid = |msg: &str| RequestError::new(id.clone(), ErrorCode::InvalidField, msg);
    let Some(Value::Array(items)) = obj.remove("channels") else {
        return Err(invalid("`channels` must be an array of strings"));
    };
    if items.is_empty() {
        return Err(invalid("`channels` must not be empty"));
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(invalid("`channels` must be an array of strings")),
        })
        .collect()
}
