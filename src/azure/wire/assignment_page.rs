//! A page of role assignments read straight from the response bytes into [`RoleAssignment`]s: no
//! `serde_json::Value` tree per row (building and dropping it was over half of the handler's CPU in a steady-state
//! run of 200,000 rows). Keys match in any ASCII case, an exact spelling first, as [`super::get_ci`] does; a row
//! that does not convert is skipped with a warning naming it, as [`super::convert_rows`] does; a page in
//! Resource Graph's `table` format takes the general path.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{RoleAssignmentReader, WireError};
use crate::core::model::RoleAssignment;

/// The fields of one row as the page spells them (borrowed from the body where the JSON has no escapes).
#[derive(Debug, Default)]
pub(super) struct RawAssignment<'a> {
    pub id: Slot<'a>,
    pub name: Slot<'a>,
    pub scope: Slot<'a>,
    pub role_definition_id: Slot<'a>,
    pub principal_id: Slot<'a>,
    pub principal_type: Slot<'a>,
    pub description: Slot<'a>,
    pub condition: Slot<'a>,
}

/// One field: its text (`None` when absent, null or not a string) and whether its key was spelt exactly.
#[derive(Debug, Default)]
pub(super) struct Slot<'a> {
    text: Option<Cow<'a, str>>,
    exact: bool,
}

impl<'a> Slot<'a> {
    pub fn get(&self) -> Option<&str> {
        self.text.as_deref()
    }

    pub fn from_str(text: Option<&'a str>) -> Self {
        Self {
            text: text.map(Cow::Borrowed),
            exact: true,
        }
    }

    /// An exact key wins over one matched ignoring case; the first of each kind is kept.
    fn offer(&mut self, exact: bool, text: Option<Cow<'a, str>>) {
        if !self.exact && (exact || self.text.is_none()) {
            self.text = text;
            self.exact = exact;
        }
    }
}

/// Which slot of a map a key names, and whether it is spelt exactly.
fn key_match<'k>(key: &str, names: &[&'k str]) -> Option<(&'k str, bool)> {
    names
        .iter()
        .find(|n| n.eq_ignore_ascii_case(key))
        .map(|n| (*n, *n == key))
}

/// Any JSON value, kept only when it is a string.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// What a skipped row is called in its warning (as the general path names it).
const ROW_KIND: &str = "role assignment";

const ROW_KEYS: [&str; 3] = ["id", "name", "properties"];
const PROPERTY_KEYS: [&str; 6] = [
    "scope",
    "roleDefinitionId",
    "principalId",
    "principalType",
    "description",
    "condition",
];

/// A row: an object read into a [`RawAssignment`]; anything else reads as an empty one (it then fails to
/// convert for want of an id, and is skipped with a warning).
impl<'de> de::Deserialize<'de> for RawAssignment<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RowVisitor { properties: false })
    }
}

/// Reads a row (`properties: false`) or its `properties` object (`true`) into a [`RawAssignment`].
struct RowVisitor {
    properties: bool,
}

/// The `properties` member of a row, merged into the row's [`RawAssignment`] by the caller.
struct Properties<'a>(RawAssignment<'a>);

impl<'de> de::Deserialize<'de> for Properties<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(RowVisitor { properties: true })
            .map(Properties)
    }
}

impl<'de> Visitor<'de> for RowVisitor {
    type Value = RawAssignment<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a role assignment object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawAssignment::default();
        // The properties object whose key was spelt exactly, else the first matched ignoring case.
        let mut properties_exact = false;
        let mut properties_seen = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let names: &[&str] = if self.properties {
                &PROPERTY_KEYS
            } else {
                &ROW_KEYS
            };
            let Some((name, exact)) = key_match(&key, names) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if name == "properties" {
                let Properties(props) = map.next_value()?;
                if (exact && !properties_exact) || !properties_seen {
                    raw.take_properties(props);
                    properties_exact = exact;
                    properties_seen = true;
                }
                continue;
            }
            let Text(text) = map.next_value()?;
            let slot = match name {
                "id" => &mut raw.id,
                "name" => &mut raw.name,
                "scope" => &mut raw.scope,
                "roleDefinitionId" => &mut raw.role_definition_id,
                "principalId" => &mut raw.principal_id,
                "principalType" => &mut raw.principal_type,
                "description" => &mut raw.description,
                _ => &mut raw.condition,
            };
            slot.offer(exact, text);
        }
        Ok(raw)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawAssignment::default())
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(RawAssignment::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawAssignment::default())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(RawAssignment::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawAssignment::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawAssignment::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawAssignment::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawAssignment::default())
    }
}

impl<'a> RawAssignment<'a> {
    fn take_properties(&mut self, props: RawAssignment<'a>) {
        self.scope = props.scope;
        self.role_definition_id = props.role_definition_id;
        self.principal_id = props.principal_id;
        self.principal_type = props.principal_type;
        self.description = props.description;
        self.condition = props.condition;
    }
}

/// Where a page's rows go: converted by the listing's reader, skipped rows named in `warnings`.
pub struct AssignmentSink<'r> {
    pub reader: &'r mut RoleAssignmentReader,
    pub rows: &'r mut Vec<RoleAssignment>,
    pub warnings: &'r mut Vec<String>,
}

impl AssignmentSink<'_> {
    fn take(&mut self, raw: &RawAssignment<'_>) {
        match self.reader.read_raw(raw) {
            Ok(a) => self.rows.push(a),
            Err(e) => self.warn(raw.id.get(), &e),
        }
    }

    fn warn(&mut self, id: Option<&str>, e: &WireError) {
        self.warnings
            .push(super::skipped_row(ROW_KIND, id.unwrap_or("?"), e));
    }
}

/// The rows of a `data` array, converted one by one as they are read.
struct RowsSeed<'s, 'r>(&'s mut AssignmentSink<'r>);

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.rows.reserve(n);
        }
        while let Some(raw) = seq.next_element::<RawAssignment<'de>>()? {
            self.0.take(&raw);
        }
        Ok(())
    }
}

/// What a Resource Graph page held besides its rows.
#[derive(Debug, Default, PartialEq)]
pub struct PageEnd {
    /// The `$skipToken` of the next page (trimmed, non-empty).
    pub skip_token: Option<String>,
    /// `data` was present (an array, or a table converted through the general path).
    pub had_data: bool,
}

/// Reads one Resource Graph page (`{"data": [...], "$skipToken": ...}`) from `body`, converting its rows into
/// `sink` as they are read. `Err` when the body is not JSON.
pub fn read_resource_graph_page(
    body: &[u8],
    sink: &mut AssignmentSink<'_>,
) -> Result<PageEnd, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let end = de.deserialize_any(PageVisitor(sink))?;
    de.end()?;
    Ok(end)
}

struct PageVisitor<'s, 'r>(&'s mut AssignmentSink<'r>);

impl<'de> Visitor<'de> for PageVisitor<'_, '_> {
    type Value = PageEnd;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Resource Graph page")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PageEnd, A::Error> {
        let mut end = PageEnd::default();
        let mut token = Slot::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key_match(&key, &["data", "$skipToken"]) {
                Some(("data", _)) if !end.had_data => {
                    end.had_data = true;
                    map.next_value_seed(DataSeed(&mut *self.0))?;
                }
                Some(("$skipToken", exact)) => {
                    let Text(text) = map.next_value()?;
                    token.offer(exact, text);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        end.skip_token = token
            .get()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(end)
    }
}

/// `data`: an array of objects (read row by row), or a `table` (read as a tree and converted as before).
struct DataSeed<'s, 'r>(&'s mut AssignmentSink<'r>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        RowsSeed(self.0).visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let table = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let page = serde_json::json!({ "data": table });
        let rows = super::take_resource_graph_page(page)
            .map(|(rows, _)| rows)
            .unwrap_or_default();
        let sink = &mut *self.0;
        super::convert_rows(
            rows,
            ROW_KIND,
            |v| sink.reader.read(v),
            sink.rows,
            sink.warnings,
        );
        Ok(())
    }
}
