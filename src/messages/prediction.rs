//! What scoring produces: a prediction (on `app_messages`) or a dead letter (the rejected
//! record with its reason), and where the record came from.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::util::escape::needs_escape;

/// Where a scored record came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Origin {
    /// A line of a file or stdin.
    Line {
        /// File name, or `-` for stdin.
        source: String,
        /// 1-based line number.
        line: u64,
    },
    /// A Kafka record.
    Kafka {
        /// Input topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// A row of an inference request (`predict --http`/`--grpc`; shadow predictions only).
    Request {
        /// `http` or `grpc`.
        api: String,
        /// The request's `id`, or one the server made when it had none.
        request_id: String,
        /// 0-based row within the request.
        row: u64,
    },
}

impl fmt::Display for Origin {
    /// `file:line` or `topic/partition/offset`: the `modelcast.source` header of a dead letter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl Origin {
    /// The borrowed form (what the messages serialize).
    pub fn as_ref(&self) -> OriginRef<'_> {
        match self {
            Origin::Line { source, line } => OriginRef::Line { source, line: *line },
            Origin::Kafka { topic, partition, offset } => {
                OriginRef::Kafka { topic, partition: *partition, offset: *offset }
            }
            Origin::Request { api, request_id, row } => OriginRef::Request { api, request_id, row: *row },
        }
    }
}

/// [`Origin`], borrowed: how the hot path names a record's origin without copying its topic.
/// Serializes exactly as [`Origin`] does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OriginRef<'a> {
    /// A line of a file or stdin.
    Line {
        /// File name, or `-` for stdin.
        source: &'a str,
        /// 1-based line number.
        line: u64,
    },
    /// A Kafka record.
    Kafka {
        /// Input topic.
        topic: &'a str,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// A row of an inference request.
    Request {
        /// `http` or `grpc`.
        api: &'a str,
        /// The request's id.
        request_id: &'a str,
        /// 0-based row within the request.
        row: u64,
    },
}

impl fmt::Display for OriginRef<'_> {
    /// `file:line` or `topic/partition/offset`: the `modelcast.source` header of a dead letter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginRef::Line { source, line } => write!(f, "{source}:{line}"),
            OriginRef::Kafka { topic, partition, offset } => write!(f, "{topic}/{partition}/{offset}"),
            OriginRef::Request { api, request_id, row } => write!(f, "{api}:{request_id}#{row}"),
        }
    }
}

/// One prediction: a line on stdout, a line of the local `app_messages` log, or the value of an
/// `app_messages` Kafka record (key = input key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Message format version.
    pub schema_version: u32,
    /// The record's key: its `key` field (JSON), the Kafka key, or the row number.
    pub key: String,
    /// The predicted value; for a classifier (`schema_version` 2) class 1's probability (two
    /// classes) or the predicted class's (more).
    pub prediction: f64,
    /// A classifier's predicted class.
    #[serde(default, rename = "class", skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// A classifier's probability of each class, in the model's class order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<ClassProbabilities>,
    /// Model name.
    pub model_name: String,
    /// Version of the model that produced it.
    pub model_version: String,
    /// Where the record came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// When the input record was produced (Kafka timestamp, ms since epoch), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_timestamp_ms: Option<i64>,
    /// When the prediction was made (ms since epoch).
    pub predicted_at_ms: i64,
    /// The shadow model's prediction (file/stdin mode with `--shadow`), when it scored the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_prediction: Option<f64>,
    /// The shadow model's version (file/stdin mode with `--shadow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_version: Option<String>,
}

impl Prediction {
    /// The borrowed form (what is serialized).
    pub fn as_ref(&self) -> PredictionRef<'_> {
        PredictionRef {
            schema_version: self.schema_version,
            key: &self.key,
            prediction: self.prediction,
            class: self.class.as_deref(),
            probabilities: self.probabilities.as_ref().map(|p| Probabilities::Pairs(&p.0)),
            model_name: &self.model_name,
            model_version: &self.model_version,
            origin: self.origin.as_ref(),
            input_timestamp_ms: self.input_timestamp_ms,
            predicted_at_ms: self.predicted_at_ms,
            shadow_prediction: self.shadow_prediction,
            shadow_version: self.shadow_version.as_deref(),
        }
    }
}

/// [`Prediction`], borrowed: the hot path builds one per record without copying a string, and
/// every prediction message is written from this form by [`PredictionRef::write_json`], which
/// writes exactly what this type's derived `Serialize` writes (a test holds them together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PredictionRef<'a> {
    /// Message format version.
    pub schema_version: u32,
    /// The record's key.
    pub key: &'a str,
    /// The predicted value.
    pub prediction: f64,
    /// A classifier's predicted class.
    #[serde(rename = "class", skip_serializing_if = "Option::is_none")]
    pub class: Option<&'a str>,
    /// A classifier's class probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Probabilities<'a>>,
    /// Model name.
    pub model_name: &'a str,
    /// Version of the model that produced it.
    pub model_version: &'a str,
    /// Where the record came from.
    #[serde(flatten)]
    pub origin: OriginRef<'a>,
    /// When the input record was produced, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_timestamp_ms: Option<i64>,
    /// When the prediction was made (ms since epoch).
    pub predicted_at_ms: i64,
    /// The shadow model's prediction, when it scored the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_prediction: Option<f64>,
    /// The shadow model's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_version: Option<&'a str>,
}

impl PredictionRef<'_> {
    /// Append this prediction's JSON to `out`: the bytes serde_json writes for it, written field
    /// by field (strings escaped by serde_json, numbers by zmij and itoa as serde_json does).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        fn str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
            // serde_json escapes exactly these bytes; a string without them is copied as is
            if !needs_escape(s.as_bytes()) {
                out.reserve(s.len() + 2);
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
                Ok(())
            } else {
                serde_json::to_writer(out, s)
            }
        }
        fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
        fn float(out: &mut Vec<u8>, v: f64) {
            if v.is_finite() {
                out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
            } else {
                out.extend_from_slice(b"null");
            }
        }
        out.extend_from_slice(b"{\"schema_version\":");
        int(out, self.schema_version);
        out.extend_from_slice(b",\"key\":");
        str(out, self.key)?;
        out.extend_from_slice(b",\"prediction\":");
        float(out, self.prediction);
        if let Some(c) = self.class {
            out.extend_from_slice(b",\"class\":");
            str(out, c)?;
        }
        if let Some(p) = &self.probabilities {
            out.extend_from_slice(b",\"probabilities\":{");
            let mut first = true;
            p.try_for_each(|label, v| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                str(out, label)?;
                out.push(b':');
                float(out, v);
                Ok(())
            })?;
            out.push(b'}');
        }
        out.extend_from_slice(b",\"model_name\":");
        str(out, self.model_name)?;
        out.extend_from_slice(b",\"model_version\":");
        str(out, self.model_version)?;
        match self.origin {
            OriginRef::Line { source, line } => {
                out.extend_from_slice(b",\"source\":");
                str(out, source)?;
                out.extend_from_slice(b",\"line\":");
                int(out, line);
            }
            OriginRef::Kafka { topic, partition, offset } => {
                out.extend_from_slice(b",\"topic\":");
                str(out, topic)?;
                out.extend_from_slice(b",\"partition\":");
                int(out, partition);
                out.extend_from_slice(b",\"offset\":");
                int(out, offset);
            }
            OriginRef::Request { api, request_id, row } => {
                out.extend_from_slice(b",\"api\":");
                str(out, api)?;
                out.extend_from_slice(b",\"request_id\":");
                str(out, request_id)?;
                out.extend_from_slice(b",\"row\":");
                int(out, row);
            }
        }
        if let Some(ts) = self.input_timestamp_ms {
            out.extend_from_slice(b",\"input_timestamp_ms\":");
            int(out, ts);
        }
        out.extend_from_slice(b",\"predicted_at_ms\":");
        int(out, self.predicted_at_ms);
        if let Some(v) = self.shadow_prediction {
            out.extend_from_slice(b",\"shadow_prediction\":");
            float(out, v);
        }
        if let Some(v) = self.shadow_version {
            out.extend_from_slice(b",\"shadow_version\":");
            str(out, v)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// A classifier's class probabilities, borrowed: serialized as a JSON object in class order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probabilities<'a> {
    /// The labels and the probabilities, side by side (the hot path's form).
    Split {
        /// The class labels.
        labels: &'a [String],
        /// One probability per label.
        values: &'a [f64],
    },
    /// (label, probability) pairs (a decoded message's form).
    Pairs(&'a [(String, f64)]),
}

impl Probabilities<'_> {
    /// Call `f` with each (label, probability), in class order (no allocation: the hot path
    /// writes every classifier message through this).
    pub fn try_for_each<E>(
        &self,
        mut f: impl FnMut(&str, f64) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        match *self {
            Probabilities::Split { labels, values } => {
                for (l, v) in labels.iter().zip(values) {
                    f(l, *v)?;
                }
            }
            Probabilities::Pairs(p) => {
                for (l, v) in p {
                    f(l, *v)?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for Probabilities<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        self.try_for_each(|l, v| m.serialize_entry(l, &v))?;
        m.end()
    }
}

/// A classifier's class probabilities, owned: a JSON object `{label: probability}` whose order
/// (the model's class order) is kept.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassProbabilities(pub Vec<(String, f64)>);

impl Serialize for ClassProbabilities {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Probabilities::Pairs(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ClassProbabilities {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ClassProbabilities;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of class probabilities")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((k, p)) = m.next_entry::<String, f64>()? {
                    v.push((k, p));
                }
                Ok(ClassProbabilities(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A record that could not be scored: a line of the local `dead_letter` log. On Kafka the
/// original bytes are the record value and the reason is a header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Message format version.
    pub schema_version: u32,
    /// The record's key, if one could be read.
    pub key: String,
    /// Why it was rejected.
    pub reason: String,
    /// Where it came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// The original record (lossy UTF-8).
    pub record: String,
    /// The model that rejected it, if one was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The original bytes (the Kafka dead-letter value); not part of the JSON form.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

/// The outcome of scoring one raw record.
#[derive(Debug, Clone, PartialEq)]
pub enum Scored {
    /// A prediction.
    Ok(Prediction),
    /// A rejected record.
    Rejected(DeadLetter),
}
