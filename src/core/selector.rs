//! The opt-in tag's value language: which clusters a registry selects. Pure.
//!
//! # Values ([`parse_opt_in`])
//! Surrounding whitespace is ignored, then (keywords case-insensitive):
//! - `*` or `all` → [`OptIn::All`];
//! - empty, `off` or `false` → [`OptIn::NotOptedIn`];
//! - anything else is a [`Selector`]. A value that does not parse is an error; callers must treat it as
//!   selecting nothing (fail closed) and report `invalid_selector`.
//!
//! # Selector grammar
//! ```text
//! selector    = requirement *( "," requirement )          ; all requirements must hold (AND)
//! requirement = "!" tag-key                               ; the tag does not exist
//!             / key                                       ; the tag exists (tag keys only)
//!             / key ( "=" / "==" / "!=" ) value
//!             / key ( "in" / "notin" ) "(" value *( "," value ) ")"
//! key         = pseudo-key / tag-key
//! pseudo-key  = "@subscription" / "@resourceGroup" / "@location"   ; case-insensitive
//! tag-key     = bare / quoted                             ; a bare key must not start with "@"
//! value       = bare / quoted
//! bare        = 1*( any char except whitespace, control characters and  , = ! ( ) " )
//! quoted      = DQUOTE *( any char except " and \  /  "\" ( DQUOTE / "\" ) ) DQUOTE
//! ```
//! Whitespace is allowed around every token; `in`/`notin` must be separated from the key by whitespace and
//! are case-insensitive. Quoting is needed for tag keys or values holding whitespace or `,=!()"` characters,
//! for a tag key that starts with `@`, and for the empty value `""` (a bare `env=` is an error, to catch
//! typos). Tag keys may contain any character Azure allows in a tag key, i.e. anything except `<>%&\?/`;
//! a key with one of those can never match and is rejected. Tag values may contain any character.
//!
//! # Semantics (those of Kubernetes label selectors)
//! - Tag keys compare case-insensitively (as Azure does), tag values case-sensitively.
//! - Pseudo-keys match where the cluster lives: `@subscription` (the subscription id), `@resourceGroup`
//!   and `@location`, all compared case-insensitively; `@location` also ignores spaces, so `West Europe`
//!   equals `westeurope`. Pseudo-keys always have a value, so they take an operator (`@location` alone or
//!   `!@location` is an error).
//! - `k!=v` and `k notin (…)` also hold when the tag is absent; `k=v` and `k in (…)` require it.
//!
//! # Canonical form ([`Selector`]'s `Display`)
//! Requirements in their written order, joined by `,` without spaces; `==` prints as `=`; `in`/`notin`
//! sets print sorted and de-duplicated as `k in (a,b)`; pseudo-keys print as `@subscription`,
//! `@resourceGroup`, `@location`; keys and values are printed bare when the bare form reads back identically,
//! else quoted. `parse_opt_in(&selector.to_string())` gives back an equal selector.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::core::model::{Cluster, Tags};

/// Characters Azure refuses in tag keys.
pub const FORBIDDEN_TAG_KEY_CHARS: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];

/// What a registry's opt-in tag value asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptIn {
    All,
    NotOptedIn,
    Selector(Selector),
}

impl OptIn {
    /// Whether `cluster` is selected (ignoring the cluster's own opt-out; see [`cluster_opted_out`]).
    pub fn selects(&self, cluster: &Cluster) -> bool {
        match self {
            Self::All => true,
            Self::NotOptedIn => false,
            Self::Selector(s) => s.matches(cluster),
        }
    }
}

impl fmt::Display for OptIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::NotOptedIn => f.write_str("off"),
            Self::Selector(s) => s.fmt(f),
        }
    }
}

/// Requirements that must all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: Key,
    pub operator: Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// A tag key, as written (compared case-insensitively).
    Tag(String),
    Subscription,
    ResourceGroup,
    Location,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

/// A selector that cannot be parsed or built. Positions are 1-based character positions in the value as given
/// (before trimming).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("at position {position}: expected {expected}, found {found}")]
    Unexpected {
        position: usize,
        expected: &'static str,
        found: String,
    },
    #[error("at position {position}: quoted string is not terminated")]
    UnterminatedQuote { position: usize },
    #[error("at position {position}: invalid escape `\\{found}` (only \\\" and \\\\ are allowed)")]
    InvalidEscape { position: usize, found: char },
    #[error(
        "at position {position}: unknown pseudo-key `@{name}` (known: @subscription, @resourceGroup, @location)"
    )]
    UnknownPseudoKey { position: usize, name: String },
    #[error(
        "at position {position}: pseudo-key `{key}` needs an operator (=, ==, !=, in, notin); it always exists"
    )]
    PseudoKeyWithoutOperator { position: usize, key: &'static str },
    #[error("at position {position}: tag key is empty")]
    EmptyKey { position: usize },
    #[error(
        "at position {position}: tag key `{key}` contains `{found}`, which Azure never allows in a tag key"
    )]
    ForbiddenKeyChar {
        position: usize,
        key: String,
        found: char,
    },
    #[error("a selector needs at least one requirement")]
    NoRequirements,
    #[error("`{key}`: an `in`/`notin` set needs at least one value")]
    EmptySet { key: String },
}

impl SelectorError {
    /// A stable label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unexpected { .. } => "unexpected_token",
            Self::UnterminatedQuote { .. } => "unterminated_quote",
            Self::InvalidEscape { .. } => "invalid_escape",
            Self::UnknownPseudoKey { .. } => "unknown_pseudo_key",
            Self::PseudoKeyWithoutOperator { .. } => "pseudo_key_without_operator",
            Self::EmptyKey { .. } => "empty_key",
            Self::ForbiddenKeyChar { .. } => "forbidden_key_char",
            Self::NoRequirements => "no_requirements",
            Self::EmptySet { .. } => "empty_set",
        }
    }
}

fn is_keyword(value: &str) -> bool {
    let v = value.trim();
    v.is_empty()
        || v == "*"
        || ["all", "off", "false"]
            .iter()
            .any(|k| v.eq_ignore_ascii_case(k))
}

/// Parses an opt-in tag value (see the module doc).
pub fn parse_opt_in(value: &str) -> Result<OptIn, SelectorError> {
    let trimmed = value.trim();
    if trimmed.is_empty()
        || trimmed.eq_ignore_ascii_case("off")
        || trimmed.eq_ignore_ascii_case("false")
    {
        return Ok(OptIn::NotOptedIn);
    }
    if trimmed == "*" || trimmed.eq_ignore_ascii_case("all") {
        return Ok(OptIn::All);
    }
    Parser::new(value).selector().map(OptIn::Selector)
}

/// The opt-in for a registry's tags: the tag absent means not opted in.
pub fn registry_opt_in(tags: &Tags, tag_name: &str) -> Result<OptIn, SelectorError> {
    tags.get(tag_name)
        .map_or(Ok(OptIn::NotOptedIn), parse_opt_in)
}

/// True when the cluster carries the opt-in tag with `off` or `false` (case-insensitive, trimmed): it opts out
/// of every registry. (`false` is accepted because the registry side treats it as `off` too; an empty value is
/// not an opt-out, as an empty tag is more likely a placeholder than a decision.)
pub fn cluster_opted_out(cluster: &Cluster, tag_name: &str) -> bool {
    cluster.tags.get(tag_name).is_some_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("false")
    })
}

impl Selector {
    /// Builds a selector from requirements, checking what the parser checks.
    pub fn new(requirements: Vec<Requirement>) -> Result<Self, SelectorError> {
        if requirements.is_empty() {
            return Err(SelectorError::NoRequirements);
        }
        for r in &requirements {
            if let Key::Tag(k) = &r.key {
                check_tag_key(k, 0)?;
            } else if matches!(r.operator, Operator::Exists | Operator::DoesNotExist) {
                return Err(SelectorError::PseudoKeyWithoutOperator {
                    position: 0,
                    key: r.key.canonical_pseudo().unwrap_or_default(),
                });
            }
            if let Operator::In(set) | Operator::NotIn(set) = &r.operator
                && set.is_empty()
            {
                return Err(SelectorError::EmptySet {
                    key: r.key.to_string(),
                });
            }
        }
        Ok(Self { requirements })
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn matches(&self, cluster: &Cluster) -> bool {
        self.requirements.iter().all(|r| r.matches(cluster))
    }

    /// Each requirement with the cluster's value and whether it holds, for the operator's `explain`.
    pub fn explain(&self, cluster: &Cluster) -> Vec<RequirementOutcome> {
        self.requirements
            .iter()
            .map(|r| RequirementOutcome {
                requirement: r.to_string(),
                key: r.key.to_string(),
                cluster_value: r.key.value_of(cluster),
                passed: r.matches(cluster),
            })
            .collect()
    }
}

/// One line of [`Selector::explain`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequirementOutcome {
    /// The requirement in canonical form.
    pub requirement: String,
    pub key: String,
    /// The cluster's value for the key (`None`: the tag is absent).
    pub cluster_value: Option<String>,
    pub passed: bool,
}

impl Key {
    fn canonical_pseudo(&self) -> Option<&'static str> {
        match self {
            Self::Tag(_) => None,
            Self::Subscription => Some("@subscription"),
            Self::ResourceGroup => Some("@resourceGroup"),
            Self::Location => Some("@location"),
        }
    }

    /// The cluster's value for this key.
    pub fn value_of(&self, cluster: &Cluster) -> Option<String> {
        self.value_in(cluster).map(str::to_owned)
    }

    /// The cluster's value for this key, borrowed (evaluation copies nothing).
    fn value_in<'c>(&self, cluster: &'c Cluster) -> Option<&'c str> {
        match self {
            Self::Tag(k) => cluster.tags.get(k),
            Self::Subscription => Some(cluster.id.subscription_id()),
            Self::ResourceGroup => cluster.id.resource_group(),
            Self::Location => Some(&cluster.location),
        }
    }

    /// Equality of a cluster's value with a selector value under this key's rules.
    fn value_eq(&self, actual: &str, wanted: &str) -> bool {
        match self {
            Self::Tag(_) => actual == wanted,
            Self::Subscription | Self::ResourceGroup => actual.eq_ignore_ascii_case(wanted),
            Self::Location => {
                let [a, w] = [actual, wanted].map(|s| {
                    s.chars()
                        .filter(|c| !c.is_whitespace())
                        .flat_map(char::to_lowercase)
                });
                a.eq(w)
            }
        }
    }
}

impl Requirement {
    pub fn matches(&self, cluster: &Cluster) -> bool {
        let actual = self.key.value_in(cluster);
        let any_eq = |set: &BTreeSet<String>, a: &str| set.iter().any(|w| self.key.value_eq(a, w));
        match (&self.operator, actual) {
            (Operator::Exists, a) => a.is_some(),
            (Operator::DoesNotExist, a) => a.is_none(),
            (Operator::Equals(w), Some(a)) => self.key.value_eq(a, w),
            (Operator::NotEquals(w), Some(a)) => !self.key.value_eq(a, w),
            (Operator::In(set), Some(a)) => any_eq(set, a),
            (Operator::NotIn(set), Some(a)) => !any_eq(set, a),
            (Operator::Equals(_) | Operator::In(_), None) => false,
            (Operator::NotEquals(_) | Operator::NotIn(_), None) => true,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------------------

fn is_bare_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !matches!(c, ',' | '=' | '!' | '(' | ')' | '"')
}

fn write_token(f: &mut fmt::Formatter<'_>, text: &str, is_key: bool) -> fmt::Result {
    let bare =
        !text.is_empty() && text.chars().all(is_bare_char) && !(is_key && text.starts_with('@'));
    if bare {
        return f.write_str(text);
    }
    f.write_str("\"")?;
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        fmt::Write::write_char(f, c)?;
    }
    f.write_str("\"")
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(k) => write_token(f, k, true),
            other => f.write_str(other.canonical_pseudo().unwrap_or_default()),
        }
    }
}

fn write_set(f: &mut fmt::Formatter<'_>, set: &BTreeSet<String>) -> fmt::Result {
    f.write_str("(")?;
    for (i, v) in set.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write_token(f, v, false)?;
    }
    f.write_str(")")
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.operator {
            Operator::DoesNotExist => {
                f.write_str("!")?;
                self.key.fmt(f)
            }
            Operator::Exists => self.key.fmt(f),
            Operator::Equals(v) => {
                self.key.fmt(f)?;
                f.write_str("=")?;
                write_token(f, v, false)
            }
            Operator::NotEquals(v) => {
                self.key.fmt(f)?;
                f.write_str("!=")?;
                write_token(f, v, false)
            }
            Operator::In(set) => {
                self.key.fmt(f)?;
                f.write_str(" in ")?;
                write_set(f, set)
            }
            Operator::NotIn(set) => {
                self.key.fmt(f)?;
                f.write_str(" notin ")?;
                write_set(f, set)
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A lone existence test of a tag named like a keyword (`all`, `off`, …) would read back as the keyword.
        if let [
            Requirement {
                key: Key::Tag(k),
                operator: Operator::Exists,
            },
        ] = self.requirements.as_slice()
            && is_keyword(k)
        {
            return write!(f, "\"{k}\"");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            r.fmt(f)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------------

fn check_tag_key(key: &str, position: usize) -> Result<(), SelectorError> {
    if key.is_empty() {
        return Err(SelectorError::EmptyKey { position });
    }
    if let Some(found) = key.chars().find(|c| FORBIDDEN_TAG_KEY_CHARS.contains(c)) {
        return Err(SelectorError::ForbiddenKeyChar {
            position,
            key: key.to_owned(),
            found,
        });
    }
    Ok(())
}

/// A token read by the parser: its text, whether it was quoted, and its 1-based start position.
struct Token {
    text: String,
    quoted: bool,
    position: usize,
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn new(input: &str) -> Self {
        Self {
            chars: input.chars().collect(),
            at: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    /// 1-based position of the next character.
    fn position(&self) -> usize {
        self.at + 1
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of input".to_owned(),
            Some(c) => format!("`{}`", c.escape_debug()),
        }
    }

    fn unexpected(&self, expected: &'static str) -> SelectorError {
        SelectorError::Unexpected {
            position: self.position(),
            expected,
            found: self.found(),
        }
    }

    fn selector(&mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            self.skip_ws();
            requirements.push(self.requirement()?);
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(',') => self.at += 1,
                Some(_) => return Err(self.unexpected("`,` or end of input")),
            }
        }
        Ok(Selector { requirements })
    }

    /// A bare or quoted token; `None` when the next character starts neither.
    fn token(&mut self) -> Result<Option<Token>, SelectorError> {
        let position = self.position();
        match self.peek() {
            Some('"') => {
                self.at += 1;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => return Err(SelectorError::UnterminatedQuote { position }),
                        Some('"') => {
                            self.at += 1;
                            break;
                        }
                        Some('\\') => {
                            self.at += 1;
                            match self.peek() {
                                Some(c @ ('"' | '\\')) => text.push(c),
                                Some(c) => {
                                    return Err(SelectorError::InvalidEscape {
                                        position: self.position() - 1,
                                        found: c,
                                    });
                                }
                                None => return Err(SelectorError::UnterminatedQuote { position }),
                            }
                            self.at += 1;
                        }
                        Some(c) => {
                            text.push(c);
                            self.at += 1;
                        }
                    }
                }
                Ok(Some(Token {
                    text,
                    quoted: true,
                    position,
                }))
            }
            Some(c) if is_bare_char(c) => {
                let start = self.at;
                while self.peek().is_some_and(is_bare_char) {
                    self.at += 1;
                }
                Ok(Some(Token {
                    text: self.chars[start..self.at].iter().collect(),
                    quoted: false,
                    position,
                }))
            }
            _ => Ok(None),
        }
    }

    fn key(&mut self) -> Result<(Key, usize), SelectorError> {
        let Some(token) = self.token()? else {
            return Err(self.unexpected(
                "a tag key, `!key` or a pseudo-key (@subscription, @resourceGroup, @location)",
            ));
        };
        if !token.quoted
            && let Some(name) = token.text.strip_prefix('@')
        {
            let key = if name.eq_ignore_ascii_case("subscription") {
                Key::Subscription
            } else if name.eq_ignore_ascii_case("resourceGroup") {
                Key::ResourceGroup
            } else if name.eq_ignore_ascii_case("location") {
                Key::Location
            } else {
                return Err(SelectorError::UnknownPseudoKey {
                    position: token.position,
                    name: name.to_owned(),
                });
            };
            return Ok((key, token.position));
        }
        check_tag_key(&token.text, token.position)?;
        Ok((Key::Tag(token.text), token.position))
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        match self.token()? {
            Some(t) => Ok(t.text),
            None => Err(self.unexpected("a value (quote it as \"\" for an empty value)")),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some('!') {
            self.at += 1;
            self.skip_ws();
            let (key, position) = self.key()?;
            if let Some(pseudo) = key.canonical_pseudo() {
                return Err(SelectorError::PseudoKeyWithoutOperator {
                    position,
                    key: pseudo,
                });
            }
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
            });
        }
        let (key, key_position) = self.key()?;
        let had_space = self.peek().is_some_and(char::is_whitespace);
        self.skip_ws();
        let operator = match self.peek() {
            Some('=') => {
                self.at += 1;
                if self.peek() == Some('=') {
                    self.at += 1;
                }
                Operator::Equals(self.value()?)
            }
            Some('!') => {
                self.at += 1;
                if self.peek() != Some('=') {
                    return Err(self.unexpected("`=` after `!`"));
                }
                self.at += 1;
                Operator::NotEquals(self.value()?)
            }
            None | Some(',') => {
                if let Some(pseudo) = key.canonical_pseudo() {
                    return Err(SelectorError::PseudoKeyWithoutOperator {
                        position: key_position,
                        key: pseudo,
                    });
                }
                Operator::Exists
            }
            Some(c) if had_space && is_bare_char(c) => {
                let word_position = self.at;
                let word = self.token()?.map(|t| t.text).unwrap_or_default();
                let negated = if word.eq_ignore_ascii_case("in") {
                    false
                } else if word.eq_ignore_ascii_case("notin") {
                    true
                } else {
                    self.at = word_position;
                    return Err(self.unexpected(
                        "an operator (`=`, `==`, `!=`, `in`, `notin`), `,` or end of input",
                    ));
                };
                let set = self.set()?;
                if negated {
                    Operator::NotIn(set)
                } else {
                    Operator::In(set)
                }
            }
            Some(_) => {
                return Err(self.unexpected(
                    "an operator (`=`, `==`, `!=`, `in`, `notin`), `,` or end of input",
                ));
            }
        };
        Ok(Requirement { key, operator })
    }

    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(self.unexpected("`(` opening the value list"));
        }
        self.at += 1;
        let mut set = BTreeSet::new();
        loop {
            set.insert(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(')') => {
                    self.at += 1;
                    return Ok(set);
                }
                _ => return Err(self.unexpected("`,` or `)` in the value list")),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::model::{ClusterPrincipal, ResourceId};

    fn cluster(tags: &[(&str, &str)]) -> Cluster {
        Cluster {
            id: ResourceId::parse(
                "/subscriptions/AAAA-1/resourceGroups/RG-Prod/providers/Microsoft.ContainerService/managedClusters/aks",
            )
            .unwrap(),
            location: "westeurope".into(),
            tenant_id: None,
            tags: tags.iter().copied().collect(),
            provisioning_state: "Succeeded".into(),
            principal: ClusterPrincipal::NotYetKnown,
        }
    }

    fn sel(s: &str) -> Selector {
        match parse_opt_in(s).unwrap() {
            OptIn::Selector(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keywords() {
        for v in ["*", " all ", "ALL"] {
            assert_eq!(parse_opt_in(v).unwrap(), OptIn::All);
        }
        for v in ["", "  ", "off", "OFF", "False"] {
            assert_eq!(parse_opt_in(v).unwrap(), OptIn::NotOptedIn);
        }
    }

    #[test]
    fn operators_follow_kubernetes_semantics() {
        let c = cluster(&[("Env", "prod"), ("team", "a")]);
        let yes = [
            "env=prod",
            "ENV==prod",
            "env!=dev",
            "missing!=x",
            "env in (prod,staging)",
            "env notin (dev)",
            "missing notin (dev)",
            "team",
            "!legacy",
            "env=prod, team , !legacy",
            "@subscription=aaaa-1",
            "@resourcegroup in (rg-prod)",
            "@location=\"West Europe\"",
            "@LOCATION notin (eastus)",
        ];
        for s in yes {
            assert!(sel(s).matches(&c), "{s}");
        }
        let no = [
            "env=Prod",
            "env in (dev)",
            "missing=x",
            "missing in (x)",
            "!team",
            "legacy",
            "env=prod,!team",
        ];
        for s in no {
            assert!(!sel(s).matches(&c), "{s}");
        }
    }

    #[test]
    fn quoting_and_canonical_form() {
        let s = sel(
            r#" "cost center" = "a, b" , env in ( b , a , b ) , x == "" , "@odd" , k!="q\"\\" "#,
        );
        assert_eq!(
            s.to_string(),
            r#""cost center"="a, b",env in (a,b),x="","@odd",k!="q\"\\""#
        );
        assert_eq!(sel(&s.to_string()), s);
        let c = cluster(&[
            ("Cost Center", "a, b"),
            ("@odd", "1"),
            ("x", ""),
            ("env", "a"),
        ]);
        assert!(s.matches(&c));
    }

    #[test]
    fn a_lone_tag_named_like_a_keyword_is_quoted() {
        for k in ["all", "OFF", "false", "*"] {
            let s = Selector::new(vec![Requirement {
                key: Key::Tag(k.into()),
                operator: Operator::Exists,
            }])
            .unwrap();
            assert_eq!(s.to_string(), format!("\"{k}\""));
            assert_eq!(parse_opt_in(&s.to_string()).unwrap(), OptIn::Selector(s));
        }
    }

    #[test]
    fn errors_are_precise() {
        let err = |s: &str| parse_opt_in(s).unwrap_err().to_string();
        assert_eq!(
            err("env="),
            "at position 5: expected a value (quote it as \"\" for an empty value), found end of input"
        );
        assert_eq!(
            err("env in prod"),
            "at position 8: expected `(` opening the value list, found `p`"
        );
        assert_eq!(
            err("env in (a"),
            "at position 10: expected `,` or `)` in the value list, found end of input"
        );
        assert_eq!(
            err("env is prod"),
            "at position 5: expected an operator (`=`, `==`, `!=`, `in`, `notin`), `,` or end of input, found `i`"
        );
        assert_eq!(
            err("a,,b"),
            "at position 3: expected a tag key, `!key` or a pseudo-key (@subscription, @resourceGroup, @location), found `,`"
        );
        assert_eq!(
            err("env=prod,"),
            "at position 10: expected a tag key, `!key` or a pseudo-key (@subscription, @resourceGroup, @location), found end of input"
        );
        assert_eq!(
            err("a!b"),
            "at position 3: expected `=` after `!`, found `b`"
        );
        assert_eq!(
            err("a=\"x"),
            "at position 3: quoted string is not terminated"
        );
        assert_eq!(
            err("@region=x"),
            "at position 1: unknown pseudo-key `@region` (known: @subscription, @resourceGroup, @location)"
        );
        assert_eq!(
            err("!@location"),
            "at position 2: pseudo-key `@location` needs an operator (=, ==, !=, in, notin); it always exists"
        );
        assert_eq!(
            err("a/b=c"),
            "at position 1: tag key `a/b` contains `/`, which Azure never allows in a tag key"
        );
        assert_eq!(err("\"\"=c"), "at position 1: tag key is empty");
        assert_eq!(
            err("a=b c"),
            "at position 5: expected `,` or end of input, found `c`"
        );
        assert_eq!(
            err("a=\"\\n\""),
            "at position 4: invalid escape `\\n` (only \\\" and \\\\ are allowed)"
        );
    }

    #[test]
    fn explain_lists_each_requirement() {
        let c = cluster(&[("env", "dev")]);
        let out = sel("env=prod,@location=westeurope,!legacy").explain(&c);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].requirement, "env=prod");
        assert_eq!(out[0].cluster_value.as_deref(), Some("dev"));
        assert!(!out[0].passed);
        assert!(out[1].passed && out[2].passed);
        assert_eq!(out[2].cluster_value, None);
    }

    #[test]
    fn cluster_opt_out() {
        assert!(cluster_opted_out(
            &cluster(&[("ACR-AutoAttach", " Off ")]),
            "acr-autoattach"
        ));
        assert!(cluster_opted_out(
            &cluster(&[("acr-autoattach", "false")]),
            "acr-autoattach"
        ));
        assert!(!cluster_opted_out(
            &cluster(&[("acr-autoattach", "")]),
            "acr-autoattach"
        ));
        assert!(!cluster_opted_out(&cluster(&[]), "acr-autoattach"));
    }

    #[test]
    fn builder_rejects_what_the_parser_rejects() {
        assert_eq!(Selector::new(vec![]), Err(SelectorError::NoRequirements));
        let r = |key, operator| Requirement { key, operator };
        assert!(Selector::new(vec![r(Key::Location, Operator::Exists)]).is_err());
        assert!(
            Selector::new(vec![r(Key::Tag("a".into()), Operator::In(BTreeSet::new()))]).is_err()
        );
        assert!(Selector::new(vec![r(Key::Tag("a?".into()), Operator::Exists)]).is_err());
        assert!(Selector::new(vec![r(Key::Tag("@a".into()), Operator::Exists)]).is_ok());
    }
}
