//! Text many values hold the same copy of: a role assignment's id (its plan item and pair result point at it), and
//! the scope, role, principal type and description that thousands of listed rows repeat.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An immutable string whose clone costs a reference count. It compares, orders and hashes exactly as the
/// `String` it replaces (byte for byte, case-sensitive), and reads as a `&str` wherever one is expected.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedStr(Arc<str>);

impl SharedStr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        Self::from("")
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedStr {
    fn from(value: &str) -> Self {
        Self(Arc::from(value))
    }
}

impl From<String> for SharedStr {
    fn from(value: String) -> Self {
        Self(Arc::from(value))
    }
}

impl From<&String> for SharedStr {
    fn from(value: &String) -> Self {
        Self::from(value.as_str())
    }
}

impl From<SharedStr> for String {
    fn from(value: SharedStr) -> Self {
        value.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == &*other.0
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        **self == *other.0
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::from(text.as_ref()))
    }
}

/// Hands out one [`SharedStr`] per distinct text seen, for the length of one listing (it is dropped with the
/// reader that owns it, so it never outlives the rows it served). A listing of 200,000 role assignments names
/// a few dozen scopes and one or two roles: each row then holds a reference, not a copy.
#[derive(Debug, Default)]
pub struct Interner(HashSet<SharedStr>);

impl Interner {
    pub fn intern(&mut self, text: &str) -> SharedStr {
        if let Some(found) = self.0.get(text) {
            return found.clone();
        }
        let shared = SharedStr::from(text);
        self.0.insert(shared.clone());
        shared
    }

    /// How many distinct texts it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Interner, SharedStr};

    #[test]
    fn compares_orders_and_serializes_as_the_string_it_holds() {
        let a = SharedStr::from("Abc");
        assert_eq!(a, "Abc");
        assert_ne!(a, "abc");
        assert_eq!("Abc", a);
        assert_eq!(a, String::from("Abc"));
        let (upper, lower) = (SharedStr::from("B"), SharedStr::from("a"));
        assert!(upper < lower, "byte order, as String");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"Abc\"");
        let back: SharedStr = serde_json::from_str("\"x\\\"y\"").unwrap();
        assert_eq!(back, "x\"y");
        assert_eq!(format!("{a:?}"), "\"Abc\"");
    }

    #[test]
    fn the_interner_returns_one_copy_per_distinct_text() {
        let mut interner = Interner::default();
        let first = interner.intern("/subscriptions/1/scope");
        let second = interner.intern("/subscriptions/1/scope");
        let other = interner.intern("/subscriptions/1/SCOPE");
        assert!(std::ptr::eq(first.as_str(), second.as_str()));
        assert!(!std::ptr::eq(first.as_str(), other.as_str()));
        assert_eq!(interner.len(), 2);
    }
}
