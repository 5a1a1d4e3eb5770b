//! Decoding raw input records (JSON objects, CSV rows) into [`Cell`]s in a model's slot order.
//! Pure: no I/O.
//!
//! JSON is decoded in one pass without building a map: keys are matched against the model's
//! column index as they stream by, strings are borrowed from the input when possible, and
//! fields the model does not use are skipped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::features::Cell;

/// Maps field names to slots for one model.
#[derive(Debug, Clone)]
pub struct Decoder {
    columns: Vec<String>,
    index: HashMap<String, usize>,
    width: usize,
    key_field: String,
}

/// A decoded record: its cells and its key (if it had one).
#[derive(Debug)]
pub struct Decoded<'a> {
    /// Cells in slot order.
    pub cells: Vec<Cell<'a>>,
    /// The value of the key field, if present.
    pub key: Option<String>,
}

impl Decoder {
    /// A decoder for `columns` (slot order); `key_field` names the field that carries the record key.
    pub fn new(columns: &[String], key_field: &str) -> Decoder {
        let index = columns.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        Decoder { columns: columns.to_vec(), index, width: columns.len(), key_field: key_field.to_string() }
    }

    /// Decode one JSON object.
    pub fn json<'a>(&self, bytes: &'a [u8]) -> Result<Decoded<'a>, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let out = de.deserialize_map(RecordVisitor { dec: self }).map_err(|e| format!("malformed JSON record: {e}"))?;
        de.end().map_err(|e| format!("malformed JSON record: {e}"))?;
        Ok(out)
    }

    /// Slot → CSV column mapping for a CSV header; also the key column, if any.
    pub fn csv_layout(&self, header: &csv::StringRecord) -> CsvLayout {
        let mut slots = vec![None; self.width];
        let mut key = None;
        for (i, h) in header.iter().enumerate() {
            let h = h.trim();
            if let Some(&s) = self.index.get(h) {
                slots[s] = Some(i);
            }
            if h == self.key_field {
                key = Some(i);
            }
        }
        CsvLayout { slots, key }
    }
}

/// Where each slot is in a CSV row.
#[derive(Debug, Clone)]
pub struct CsvLayout {
    slots: Vec<Option<usize>>,
    key: Option<usize>,
}

impl CsvLayout {
    /// Slots whose column is absent from the header.
    pub fn missing_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i)
    }

    /// Cells of one row (absent cells are [`Cell::Missing`]).
    pub fn decode<'a>(&self, row: &'a csv::StringRecord) -> Decoded<'a> {
        let cells = self
            .slots
            .iter()
            .map(|s| match s.and_then(|i| row.get(i)) {
                Some(v) => Cell::Text(Cow::Borrowed(v)),
                None => Cell::Missing,
            })
            .collect();
        let key = self.key.and_then(|i| row.get(i)).map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
        Decoded { cells, key }
    }
}

struct RecordVisitor<'d> {
    dec: &'d Decoder,
}

enum Field {
    Slot(usize),
    Key,
    Other,
}

/// Matches a field name to its slot; `.1` is the slot expected next (records usually list their
/// fields in the model's order, so one string comparison beats hashing the name).
struct FieldSeed<'d>(&'d Decoder, usize);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Field;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
        if self.0.columns.get(self.1).is_some_and(|c| c == v) {
            return Ok(Field::Slot(self.1));
        }
        Ok(match self.0.index.get(v) {
            Some(&i) => Field::Slot(i),
            None if v == self.0.key_field => Field::Key,
            None => Field::Other,
        })
    }
}

struct CellSeed;

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = Cell<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cell<'de>, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, string or null")
    }
    fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::Num(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
        Ok(Cell::Num(v as f64))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Missing)
    }
    fn visit_none<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Missing)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Invalid("a boolean"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Invalid("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Invalid("an object"))
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or number key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Decoded<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of feature values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decoded<'de>, A::Error> {
        let mut cells = vec![Cell::Missing; self.dec.width];
        let mut key = None;
        let mut next = 0;
        while let Some(field) = map.next_key_seed(FieldSeed(self.dec, next))? {
            match field {
                Field::Slot(i) => {
                    cells[i] = map.next_value_seed(CellSeed)?;
                    next = i + 1;
                }
                Field::Key => key = map.next_value_seed(KeySeed)?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Decoded { cells, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec() -> Decoder {
        Decoder::new(&["a".to_string(), "c".to_string()], "key")
    }

    #[test]
    fn json_fields_land_in_their_slots_and_extra_fields_are_ignored() {
        let d = dec();
        let r = d.json(br#"{"extra": {"x": [1, 2]}, "c": "re\"d", "a": 1.5, "key": 42}"#).unwrap();
        assert_eq!(r.cells, vec![Cell::Num(1.5), Cell::Text("re\"d".into())]);
        assert_eq!(r.key.as_deref(), Some("42"));
        let r = d.json(br#"{"a": null}"#).unwrap();
        assert_eq!(r.cells, vec![Cell::Missing, Cell::Missing]);
        assert_eq!(r.key, None);
    }

    #[test]
    fn fields_in_model_order_out_of_order_or_repeated_all_land_in_their_slots() {
        let d = Decoder::new(&["a".to_string(), "b".to_string(), "c".to_string()], "key");
        let in_order = d.json(br#"{"a": 1, "b": 2, "c": 3}"#).unwrap();
        let shuffled = d.json(br#"{"c": 3, "x": 0, "a": 1, "b": 2}"#).unwrap();
        assert_eq!(in_order.cells, vec![Cell::Num(1.0), Cell::Num(2.0), Cell::Num(3.0)]);
        assert_eq!(shuffled.cells, in_order.cells);
        // a repeated field: the last value wins, as with serde_json's maps
        let repeated = d.json(br#"{"a": 1, "b": 2, "a": 5}"#).unwrap();
        assert_eq!(repeated.cells, vec![Cell::Num(5.0), Cell::Num(2.0), Cell::Missing]);
        // a field named like the key is the key even where a column is expected next
        let keyed = d.json(br#"{"a": 1, "key": "k", "b": 2}"#).unwrap();
        assert_eq!(keyed.key.as_deref(), Some("k"));
    }

    #[test]
    fn wrong_types_become_invalid_cells_and_garbage_is_an_error() {
        let d = dec();
        let r = d.json(br#"{"a": true, "c": [1]}"#).unwrap();
        assert_eq!(r.cells, vec![Cell::Invalid("a boolean"), Cell::Invalid("an array")]);
        for bad in [&b"{\"a\": 1"[..], b"[1,2]", b"\xff\xfe", b"{\"a\": NaN}", b"{} trailing", b""] {
            assert!(d.json(bad).unwrap_err().contains("malformed JSON"), "{bad:?}");
        }
    }

    #[test]
    fn csv_layout_maps_header_names() {
        let d = dec();
        let header = csv::StringRecord::from(vec!["key", "c", "zzz"]);
        let layout = d.csv_layout(&header);
        assert_eq!(layout.missing_slots().collect::<Vec<_>>(), vec![0]);
        let row = csv::StringRecord::from(vec!["k1", "blue", "9"]);
        let r = layout.decode(&row);
        assert_eq!(r.cells, vec![Cell::Missing, Cell::Text("blue".into())]);
        assert_eq!(r.key.as_deref(), Some("k1"));
    }
}
