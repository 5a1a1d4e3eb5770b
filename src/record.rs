//! Decoding raw input records (JSON objects, CSV rows) into [`Cell`]s in a model's slot order.
//! Pure: no I/O.
//!
//! JSON is decoded in one pass without building a map: keys are matched against the model's
//! column index as they stream by, strings are borrowed from the input when possible, and
//! fields the model does not use are skipped.
//!
//! Two decoders give the same result: a scanner for the flat records a service sees (string
//! keys and values without escapes, numbers, `null`, booleans), which parses numbers with the
//! standard library's correctly rounded parser, and serde_json for everything else (escapes,
//! nested values, every malformed input). The scanner hands a record it does not fully
//! understand to serde_json, so every error message comes from one place.

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
    /// The key field names a column too (the column wins).
    key_is_column: bool,
    /// Per slot, its name as it stands in a record (`"name"`), when the name needs no escape:
    /// the scanner's first guess at each field is one comparison against this.
    quoted: Vec<Option<Vec<u8>>>,
    /// The key field's name likewise (when it is not a column).
    quoted_key: Option<Vec<u8>>,
}

/// `"name"` as JSON writes it, when that needs no escape.
fn quoted(name: &str) -> Option<Vec<u8>> {
    (!name.bytes().any(|c| STOP[usize::from(c)])).then(|| [&b"\""[..], name.as_bytes(), b"\""].concat())
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
        let index: HashMap<String, usize> = columns.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        let key_is_column = index.contains_key(key_field);
        Decoder {
            columns: columns.to_vec(),
            index,
            width: columns.len(),
            key_field: key_field.to_string(),
            key_is_column,
            quoted: columns.iter().map(|c| quoted(c)).collect(),
            quoted_key: if key_is_column { None } else { quoted(key_field) },
        }
    }

    /// Decode one JSON object.
    pub fn json<'a>(&self, bytes: &'a [u8]) -> Result<Decoded<'a>, String> {
        let mut cells = Vec::with_capacity(self.width);
        let key = self.json_into(bytes, &mut cells)?;
        Ok(Decoded { cells, key: key.map(Cow::into_owned) })
    }

    /// Decode one JSON object into `cells` (cleared first; reused from record to record, so the
    /// hot path allocates nothing) and return its key field, borrowed from `bytes` when it is a
    /// string without escapes.
    pub fn json_into<'a>(&self, bytes: &'a [u8], cells: &mut Vec<Cell<'a>>) -> Result<Option<Cow<'a, str>>, String> {
        cells.clear();
        cells.resize(self.width, Cell::Missing);
        if let Some(key) = self.scan(bytes, cells) {
            return Ok(key);
        }
        self.json_serde(bytes, cells)
    }

    /// [`Decoder::json_into`] by serde_json alone (what the scanner falls back to).
    pub(crate) fn json_serde<'a>(
        &self,
        bytes: &'a [u8],
        cells: &mut Vec<Cell<'a>>,
    ) -> Result<Option<Cow<'a, str>>, String> {
        cells.clear();
        cells.resize(self.width, Cell::Missing);
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let key = de
            .deserialize_map(RecordVisitor { dec: self, cells })
            .map_err(|e| format!("malformed JSON record: {e}"))?;
        de.end().map_err(|e| format!("malformed JSON record: {e}"))?;
        Ok(key)
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

impl Decoder {
    /// The field a name is: the slot expected `next` (records usually list their fields in the
    /// model's order, so one comparison beats hashing the name), another slot, the key or none.
    fn field(&self, name: &str, next: usize) -> Field {
        if self.columns.get(next).is_some_and(|c| c == name) {
            return Field::Slot(next);
        }
        match self.index.get(name) {
            Some(&i) => Field::Slot(i),
            None if name == self.key_field => Field::Key,
            None => Field::Other,
        }
    }

    /// [`Decoder::field`] of a name as it stands in the record (no escapes, no control
    /// characters): the expected column and the key are compared as bytes, anything else is
    /// checked to be UTF-8 first (`None` if it is not).
    fn field_raw(&self, name: &[u8], next: usize) -> Option<Field> {
        if self.columns.get(next).is_some_and(|c| c.as_bytes() == name) {
            return Some(Field::Slot(next));
        }
        if name == self.key_field.as_bytes() && !self.key_is_column {
            return Some(Field::Key);
        }
        Some(self.field(std::str::from_utf8(name).ok()?, next))
    }

    /// The field at `b[i]` when it is the slot expected `next` or the key, named without
    /// escapes (what a producer writes), and the index after its name. A string ends at its
    /// first unescaped quote, so `"name"` followed by anything is exactly that name.
    fn expected(&self, b: &[u8], i: usize, next: usize) -> Option<(Field, usize)> {
        let rest = b.get(i..)?;
        if let Some(Some(q)) = self.quoted.get(next) {
            if rest.starts_with(q) {
                return Some((Field::Slot(next), i + q.len()));
            }
        }
        match &self.quoted_key {
            Some(q) if rest.starts_with(q) => Some((Field::Key, i + q.len())),
            _ => None,
        }
    }

    /// The fast path: a flat JSON object whose strings have no escapes. `None` when the record
    /// is anything else (escapes, nested values, a number out of range, malformed input):
    /// serde_json then decodes it, or says what is wrong with it.
    pub(crate) fn scan<'a>(&self, b: &'a [u8], cells: &mut [Cell<'a>]) -> Option<Option<Cow<'a, str>>> {
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = ws(b, i + 1);
        let mut key = None;
        let mut next = 0;
        if b.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                let (field, j) = match self.expected(b, i, next) {
                    Some(found) => found,
                    None => {
                        let (name, j) = raw_string(b, i)?;
                        (self.field_raw(name, next)?, j)
                    }
                };
                i = ws(b, j);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = ws(b, i + 1);
                let (value, j) = value(b, i)?;
                i = ws(b, j);
                match field {
                    Field::Slot(s) => {
                        cells[s] = value;
                        next = s + 1;
                    }
                    Field::Key => match value {
                        Cell::Text(Cow::Borrowed(k)) => key = Some(Cow::Borrowed(k)),
                        Cell::Missing => key = None,
                        // numbers and booleans become text as serde_json's decoder makes them
                        _ => return None,
                    },
                    Field::Other => {}
                }
                match b.get(i) {
                    Some(b',') => i = ws(b, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (ws(b, i) == b.len()).then_some(key)
    }
}

/// The index of the first non-whitespace byte at or after `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Bytes that end the fast path's view of a string: the closing quote, an escape, or a control
/// character (invalid in JSON).
const STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The bytes of a string without escapes or control characters starting at `b[i] == '"'`, and
/// the index after its closing quote (not yet checked to be UTF-8).
fn raw_string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut end = start;
    while !STOP[usize::from(*b.get(end)?)] {
        end += 1;
    }
    (b[end] == b'"').then_some((&b[start..end], end + 1))
}

/// A scalar value at `b[i]` (string, number, `null`, boolean) as a cell, and the index after it.
fn value(b: &[u8], i: usize) -> Option<(Cell<'_>, usize)> {
    match *b.get(i)? {
        b'"' => {
            let (s, j) = raw_string(b, i)?;
            Some((Cell::Text(Cow::Borrowed(std::str::from_utf8(s).ok()?)), j))
        }
        b'n' => b[i..].starts_with(b"null").then_some((Cell::Missing, i + 4)),
        b't' => b[i..].starts_with(b"true").then_some((Cell::Invalid("a boolean"), i + 4)),
        b'f' => b[i..].starts_with(b"false").then_some((Cell::Invalid("a boolean"), i + 5)),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
}

/// A number by JSON's grammar at `b[i]`, correctly rounded (as serde_json's `float_roundtrip`);
/// `None` when it is out of range.
///
/// Decimals with at most 15 significant digits and a small exponent (every feature value a
/// service sees in practice) take Clinger's fast path: the digits as an exact integer times or
/// divided by an exact power of ten is one correctly rounded operation. Anything else goes to the
/// standard library's parser.
pub(crate) fn number(b: &[u8], i: usize) -> Option<(Cell<'_>, usize)> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];
    // digits from `j`: (index after them, their value while it fits, how many)
    let digits = |mut j: usize, mut m: u64, mut n: usize| {
        // a run of up to 7 digits in one go, when 8 bytes can be read: no branch per digit, and
        // none that depends on how many there are (a feature's digits vary from record to record)
        if let Some(w) = b.get(j..).and_then(|s| s.first_chunk::<8>()) {
            let (k, v) = leading_digits(u64::from_le_bytes(*w));
            if k < 8 {
                let m = m.wrapping_mul(POW10_INT[k]).wrapping_add(v);
                return (k > 0).then_some((j + k, m, n + k));
            }
        }
        let start = j;
        while let Some(d) = b.get(j).filter(|c| c.is_ascii_digit()) {
            m = m.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            n += 1;
            j += 1;
        }
        (j > start).then_some((j, m, n))
    };
    let mut j = i;
    let negative = b[j] == b'-';
    if negative {
        j += 1;
    }
    // no leading zeros: "0" or [1-9][0-9]*
    let (mut m, mut n) = (0u64, 0usize);
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => (j, m, n) = digits(j, 0, 0)?,
        _ => return None,
    }
    let mut exp: i64 = 0;
    if b.get(j) == Some(&b'.') {
        let after_point = j + 1;
        (j, m, n) = digits(after_point, m, n)?;
        exp -= (j - after_point) as i64;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        let minus = match b.get(j) {
            Some(b'-') => {
                j += 1;
                true
            }
            Some(b'+') => {
                j += 1;
                false
            }
            _ => false,
        };
        let start = j;
        let mut e: i64 = 0;
        while let Some(d) = b.get(j).filter(|c| c.is_ascii_digit()) {
            e = e.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            j += 1;
        }
        if j == start {
            return None;
        }
        exp = exp.saturating_add(if minus { -e } else { e });
    }
    // at most 15 digits: m < 2^53 is exact (leading zeros of "0.00123" count as digits but add
    // nothing to m, which only sends more numbers to the slow path)
    let v = if n <= 15 && (-22..=22).contains(&exp) {
        // m < 2^53: exact, and a signed conversion is one instruction where an unsigned one is several
        let m = m as i64 as f64;
        let v = if exp < 0 { m / POW10[exp.unsigned_abs() as usize] } else { m * POW10[exp as usize] };
        if negative {
            -v
        } else {
            v
        }
    } else {
        // the slice is ASCII by construction
        std::str::from_utf8(&b[i..j]).ok()?.parse().ok()?
    };
    if !v.is_finite() {
        return None;
    }
    Some((Cell::Num(v), j))
}

/// 10^k for k < 8.
const POW10_INT: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// How many of the 8 bytes in `w` (in input order: the first byte is the lowest) are ASCII digits
/// before the first that is not, and, when that is fewer than 8, their value (SWAR: a byte is a
/// digit when its high nibble is 3 and its low nibble at most 9; the digits are shifted up
/// behind zeros and combined pairwise in three multiplications, as fast_float does).
fn leading_digits(w: u64) -> (usize, u64) {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // a non-zero byte for each byte that is not a digit (no carry crosses a byte: a low nibble
    // plus 6 is at most 0x15)
    let not_digit = ((w & HIGH) ^ ZEROS) | (((w & LOW) + 0x0606_0606_0606_0606) & HIGH);
    let k = (not_digit.trailing_zeros() / 8) as usize;
    if k == 0 || k == 8 {
        return (k, 0);
    }
    // the k digits' values in the top k bytes, zeros (leading zero digits) below
    let d = (w.wrapping_sub(ZEROS) & (u64::MAX >> (64 - 8 * k))) << (8 * (8 - k));
    let pairs = d.wrapping_mul(10).wrapping_add(d >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    let v = ((pairs & MASK).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((pairs >> 16) & MASK).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    (k, v & 0xFFFF_FFFF)
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

struct RecordVisitor<'d, 'c, 'a> {
    dec: &'d Decoder,
    cells: &'c mut Vec<Cell<'a>>,
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
        Ok(self.0.field(v, self.1))
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
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or number key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for RecordVisitor<'_, '_, 'de> {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of feature values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut key = None;
        let mut next = 0;
        while let Some(field) = map.next_key_seed(FieldSeed(self.dec, next))? {
            match field {
                Field::Slot(i) => {
                    self.cells[i] = map.next_value_seed(CellSeed)?;
                    next = i + 1;
                }
                Field::Key => key = map.next_value_seed(KeySeed)?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(key)
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
    fn the_scanner_takes_flat_records_and_leaves_the_rest_to_serde_json() {
        let d = dec();
        let mut cells = vec![Cell::Missing; 2];
        let flat = br#" { "a" : -1.25e1, "x": true, "c":"red", "key":"k1", "y": null } "#;
        assert_eq!(d.scan(flat, &mut cells), Some(Some(Cow::Borrowed("k1"))));
        assert_eq!(cells, vec![Cell::Num(-12.5), Cell::Text("red".into())]);
        // "-0" is -0.0, as serde_json reads it
        assert_eq!(d.scan(br#"{"a": -0}"#, &mut cells), Some(None));
        assert!(matches!(cells[0], Cell::Num(v) if v == 0.0 && v.is_sign_negative()));
        // escapes, nested values, numeric keys, out-of-range and malformed numbers: serde_json's
        for other in [
            &br#"{"c": "re\"d"}"#[..],
            br#"{"a": [1]}"#,
            br#"{"key": 42}"#,
            br#"{"a": 1e400}"#,
            br#"{"a": 01}"#,
            br#"{"a": 1.}"#,
            br#"{"a": 1,}"#,
            b"{\"c\": \"\x01\"}",
        ] {
            assert_eq!(d.scan(other, &mut cells), None, "{}", String::from_utf8_lossy(other));
        }
        let mut v = Vec::new();
        assert_eq!(d.json_into(br#"{"key": 42, "c": "re\"d"}"#, &mut v).unwrap().as_deref(), Some("42"));
        assert_eq!(v[1], Cell::Text("re\"d".into()));
        assert!(d.json_into(br#"{"a": 1e400}"#, &mut v).unwrap_err().contains("out of range"));
    }

    #[test]
    fn leading_digits_counts_and_reads_every_run_length_before_any_byte() {
        let mut rng = crate::util::rng::SplitMix64::new(7);
        for k in 0..=8usize {
            for stop in 0..=255u8 {
                let mut w = [0u8; 8];
                for b in w.iter_mut() {
                    *b = b'0' + (rng.next_u64() % 10) as u8;
                }
                if k < 8 {
                    w[k] = stop;
                }
                let want_k = w.iter().take_while(|c| c.is_ascii_digit()).count();
                let (got_k, v) = leading_digits(u64::from_le_bytes(w));
                assert_eq!(got_k, want_k, "{w:?}");
                if (1..8).contains(&want_k) {
                    let want: u64 = std::str::from_utf8(&w[..want_k]).unwrap().parse().unwrap();
                    assert_eq!(v, want, "{w:?}");
                }
            }
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
