//! The fleets the configuration file creates (`[[fleets]]`): the admin
//! API's [`FleetDefinition`] (its keys, its defaults, its mode names) plus
//! the fleet's `id` and `title_region`, and the replicated fleet record
//! they describe.
//!
//! A table is read by hand: `id` and `title_region` are taken out and every
//! other key goes to `FleetDefinition`'s own deserializer, which refuses
//! keys it does not know. (`#[serde(flatten)]` would accept any key:
//! serde ignores `deny_unknown_fields` on a struct with a flattened field.)
//! A key neither knows is refused here, naming it and every key a fleet
//! table has.

use respawn_types::*;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

/// A fleet to create or update at start-up: `id`, `title_region`, and the
/// keys of the admin API's body for
/// `PUT /admin/title_regions/{tr}/fleets/{id}` with the same defaults
/// (every key but `launch_path` has one). Durations in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSpec {
    pub id: String,
    pub title_region: String,
    /// Every other key of the table. (Serialized into the same table; only
    /// serialization is derived, see the module's documentation.)
    #[serde(flatten)]
    pub definition: FleetDefinition,
}

impl FleetSpec {
    /// The replicated fleet record this spec describes.
    pub fn to_fleet(&self) -> Fleet {
        self.definition.to_fleet(
            FleetId::new_unchecked(self.id.clone()),
            TitleRegionId::new_unchecked(self.title_region.clone()),
        )
    }
}

/// The keys this module reads itself.
const OWN_KEYS: [&str; 2] = ["id", "title_region"];

/// Every key of a fleet table: [`OWN_KEYS`], then the definition's.
fn fleet_keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = OWN_KEYS.to_vec();
        keys.extend_from_slice(definition_keys());
        keys
    })
}

/// The field names `FleetDefinition`'s derived deserializer knows: serde
/// hands them to `deserialize_struct`, where [`FieldNames`] keeps them.
fn definition_keys() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // Always an error: FieldNames deserializes nothing; it only looks.
    let _ = FleetDefinition::deserialize(FieldNames(&mut names));
    names
}

/// A deserializer that records the field names of the struct asked of it
/// and fails.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names only"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

impl<'de> Deserialize<'de> for FleetSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SpecVisitor)
    }
}

struct SpecVisitor;

impl<'de> Visitor<'de> for SpecVisitor {
    type Value = FleetSpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a fleet table (id, title_region, launch_path, ...)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FleetSpec, A::Error> {
        let mut own = OwnKeys {
            map,
            id: None,
            title_region: None,
        };
        let definition =
            FleetDefinition::deserialize(de::value::MapAccessDeserializer::new(&mut own))?;
        Ok(FleetSpec {
            id: own.id.ok_or_else(|| de::Error::missing_field("id"))?,
            title_region: own
                .title_region
                .ok_or_else(|| de::Error::missing_field("title_region"))?,
            definition,
        })
    }
}

/// The fleet table's entries as `FleetDefinition` sees them: `id` and
/// `title_region` are read into their slots and skipped; a key that is
/// neither one of them nor the definition's is refused.
struct OwnKeys<A> {
    map: A,
    id: Option<String>,
    title_region: Option<String>,
}

/// A key of the table: one of the definition's (as its seed read it), or
/// one of [`OWN_KEYS`] (by index), with the seed handed back unused.
enum Key<S, V> {
    Definition(V),
    Own(usize, S),
}

/// Reads a key; hands it to the definition's seed unless it is one of
/// [`OWN_KEYS`] or unknown.
struct KeySeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<S> {
    type Value = Key<S, S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        if let Some(i) = OWN_KEYS.iter().position(|k| *k == key) {
            return Ok(Key::Own(i, self.0));
        }
        if !fleet_keys().contains(&key.as_str()) {
            return Err(de::Error::unknown_field(&key, fleet_keys()));
        }
        let key: de::value::StringDeserializer<D::Error> = key.into_deserializer();
        self.0.deserialize(key).map(Key::Definition)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OwnKeys<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = seed;
        loop {
            match self.map.next_key_seed(KeySeed(seed))? {
                None => return Ok(None),
                Some(Key::Definition(key)) => return Ok(Some(key)),
                Some(Key::Own(i, unused)) => {
                    let value: String = self.map.next_value()?;
                    let slot = if i == 0 {
                        &mut self.id
                    } else {
                        &mut self.title_region
                    };
                    if slot.replace(value).is_some() {
                        return Err(de::Error::duplicate_field(OWN_KEYS[i]));
                    }
                    seed = unused;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<FleetSpec, toml::de::Error> {
        toml::from_str(toml)
    }

    #[test]
    fn keys_are_the_definitions_plus_id_and_title_region() {
        let d: FleetDefinition = serde_json::from_str(r#"{"launch_path":"/x"}"#).unwrap();
        let spec = FleetSpec {
            id: "f".into(),
            title_region: "tr".into(),
            definition: d,
        };
        let json = serde_json::to_value(&spec).unwrap();
        let mut serialized: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut known = fleet_keys().to_vec();
        serialized.sort_unstable();
        known.sort_unstable();
        assert_eq!(serialized, known);
        assert!(fleet_keys().contains(&"launch_path"), "{:?}", fleet_keys());
        // What serialization writes reads back the same.
        assert_eq!(serde_json::from_value::<FleetSpec>(json).unwrap(), spec);
    }

    #[test]
    fn a_table_without_optional_keys_gets_the_apis_defaults() {
        let spec = parse("id = \"f\"\ntitle_region = \"tr\"\nlaunch_path = \"/bin/ds\"\n").unwrap();
        let api: FleetDefinition = serde_json::from_str(r#"{"launch_path":"/bin/ds"}"#).unwrap();
        assert_eq!(spec.definition, api);
        assert_eq!(spec.definition, FleetDefinition::new("/bin/ds"));
        assert_eq!((spec.id.as_str(), spec.title_region.as_str()), ("f", "tr"));
    }

    #[test]
    fn own_and_definition_keys_are_read_in_any_order() {
        let spec = parse(
            "mode = \"parallel\"\nid = \"f\"\nmax_sessions_per_process = 4\n\
             title_region = \"tr\"\nlaunch_path = \"/x\"\n[scaling]\nbuffer = 2\n",
        )
        .unwrap();
        assert_eq!(spec.definition.mode, fleet::ModeName::Parallel);
        assert_eq!(spec.definition.max_sessions_per_process, 4);
        assert_eq!(spec.definition.scaling.buffer, 2);
        assert_eq!(spec.title_region, "tr");
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let e = parse("id = \"f\"\ntitle_region = \"tr\"\nlaunch_path = \"/x\"\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        // The list of keys it gives includes the ones read here.
        assert!(
            e.contains("`title_region`") && e.contains("`launch_path`"),
            "{e}"
        );
        let e = parse("id = \"f\"\ntitle_region = \"tr\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `launch_path`"), "{e}");
        let e = parse("id = \"f\"\nlaunch_path = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `title_region`"), "{e}");
        let e = parse("id = 3\ntitle_region = \"tr\"\nlaunch_path = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a string"), "{e}");
    }
}
