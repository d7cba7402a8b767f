//! SCIM 2.0 (RFC 7643 / RFC 7644) for Accessrail's TestRail service provider: the pure part.
//! Okta, Microsoft Entra ID and other SCIM clients provision TestRail users and groups through
//! Accessrail; this module parses their filters and PATCH requests and applies them to SCIM
//! resources held as JSON, and selects the attributes a response returns. No I/O.
//!
//! Resources are JSON objects with keys in canonical camelCase (`userName`, `emails`, ...);
//! extension attributes live under their schema URN (`resource[TESTRAIL_USER]["role"]`).
//! Attribute names are matched case-insensitively everywhere, as RFC 7643 §2.1 requires.

use std::fmt;

use serde_json::{Map, Number, Value};

/// The core User schema (RFC 7643 §4.1).
pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema (RFC 7643 §4.2).
pub const CORE_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The PATCH request message schema (RFC 7644 §3.5.2).
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Accessrail's extension for TestRail-specific user attributes (such as `role`).
pub const TESTRAIL_USER: &str = "urn:accessrail:params:scim:schemas:extension:testrail:2.0:User";

/// The enterprise User extension (RFC 7643 §4.3); Entra ID sends it for employee numbers.
const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Schema URNs Accessrail knows, in canonical case.
const KNOWN_SCHEMAS: &[&str] = &[CORE_USER, CORE_GROUP, TESTRAIL_USER, ENTERPRISE_USER];

/// Canonical spellings for attributes a PATCH may create (a new key takes this spelling).
const CANONICAL_NAMES: &[&str] = &[
    "userName",
    "name",
    "givenName",
    "familyName",
    "middleName",
    "formatted",
    "honorificPrefix",
    "honorificSuffix",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    "externalId",
    "members",
    "value",
    "display",
    "type",
    "primary",
    "$ref",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
];

/// Multi-valued core attributes (lower case): PATCH add appends to them.
const MULTI_VALUED: &[&str] = &[
    "emails",
    "phonenumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509certificates",
    "members",
];

/// Comparison operators of RFC 7644 §3.4.2.2 that Accessrail refuses (only `eq` and `pr` are answered).
const REFUSED_OPERATORS: &[&str] = &["ne", "co", "sw", "ew", "gt", "ge", "lt", "le"];

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// A parsed filter (RFC 7644 §3.4.2.2), the subset Accessrail answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq(AttrPath, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// An attribute path, normalised: core-schema URN prefixes removed; `attr` and `sub` lower case;
/// `schema` is Some(lower-case extension URN) for an extension attribute such as
/// `urn:accessrail:params:scim:schemas:extension:testrail:2.0:User:role`.
///
/// A known extension URN on its own (`urn:...:testrail:2.0:User`) names the whole extension
/// object: `schema` is None and `attr` is the lower-case URN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub schema: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

/// Why a filter is refused: the caller answers 400 with scimType "invalidFilter".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

/// The most words and symbols a filter may have.
pub const MAX_FILTER_TOKENS: usize = 256;
/// The deepest a filter may nest parentheses.
pub const MAX_FILTER_DEPTH: usize = 16;

/// Parses a SCIM filter: `eq` and `pr` comparisons joined by `and`, `or`, `not ( ... )` and
/// parentheses; `and` binds tighter than `or`. Keywords ignore case. Values are JSON strings,
/// `true`/`false`/`null`, numbers, or bare words (which mean strings).
pub fn parse_filter(text: &str) -> Result<Filter, FilterError> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(filter_error("the filter is empty"));
    }
    // Bounded, so a hostile filter cannot exhaust the stack of the parser or of matching.
    if tokens.len() > MAX_FILTER_TOKENS {
        return Err(filter_error(format!(
            "the filter is too long (more than {MAX_FILTER_TOKENS} words and symbols)"
        )));
    }
    let mut depth = 0usize;
    for t in &tokens {
        match t {
            Token::Open => {
                depth += 1;
                if depth > MAX_FILTER_DEPTH {
                    return Err(filter_error(format!(
                        "the filter nests more than {MAX_FILTER_DEPTH} parentheses"
                    )));
                }
            }
            Token::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut parser = FilterParser {
        tokens: tokens.into_iter().peekable(),
    };
    let filter = parser.parse_or()?;
    match parser.tokens.next() {
        None => Ok(filter),
        Some(token) => Err(filter_error(format!(
            "unexpected {} after a complete filter",
            token.describe()
        ))),
    }
}

/// Parses an attribute path (`userName`, `name.givenName`, a URN-qualified path), normalised
/// as [`AttrPath`] describes.
pub fn parse_attr_path(text: &str) -> Result<AttrPath, FilterError> {
    let raw = split_attr_path(text.trim()).map_err(FilterError)?;
    Ok(AttrPath {
        schema: raw.schema.map(str::to_ascii_lowercase),
        attr: raw.attr.to_ascii_lowercase(),
        sub: raw.sub.map(str::to_ascii_lowercase),
    })
}

impl Filter {
    /// Does `resource` (a SCIM resource as JSON, keys in canonical camelCase) match?
    /// `case_exact`: lower-case attribute paths compared case-sensitively (e.g. ["id", "externalid"]);
    /// every other string comparison ignores case (userName, emails.value, displayName: RFC 7643 caseExact=false).
    pub fn matches(&self, resource: &Value, case_exact: &[&str]) -> bool {
        match self {
            Filter::Eq(path, wanted) => eq_matches(resource, path, wanted, case_exact),
            Filter::Present(path) => attribute_values(resource, path).into_iter().any(is_present),
            Filter::And(left, right) => {
                left.matches(resource, case_exact) && right.matches(resource, case_exact)
            }
            Filter::Or(left, right) => {
                left.matches(resource, case_exact) || right.matches(resource, case_exact)
            }
            Filter::Not(inner) => !inner.matches(resource, case_exact),
        }
    }

    /// `Some((path, value))` when the whole filter is one `attr eq value` (the caller uses it to look up
    /// by userName / externalId / id without listing everything).
    pub fn as_single_eq(&self) -> Option<(&AttrPath, &Value)> {
        match self {
            Filter::Eq(path, value) => Some((path, value)),
            _ => None,
        }
    }
}

/// A lexical token of a filter.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Quoted(String),
    Word(String),
}

impl Token {
    /// How an error message names the token.
    fn describe(&self) -> String {
        match self {
            Token::Open => "'('".to_string(),
            Token::Close => "')'".to_string(),
            Token::OpenBracket => "'['".to_string(),
            Token::CloseBracket => "']'".to_string(),
            Token::Quoted(text) => format!("the string {text:?}"),
            Token::Word(word) => format!("'{word}'"),
        }
    }
}

/// Builds a [`FilterError`].
fn filter_error(message: impl Into<String>) -> FilterError {
    FilterError(message.into())
}

/// Splits filter text into tokens: parentheses, brackets, JSON strings and bare words.
fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        let next = at + c.len_utf8();
        match c {
            _ if c.is_whitespace() => at = next,
            '(' | ')' | '[' | ']' => {
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
                at = next;
            }
            '"' => {
                let end = quoted_end(text, at)
                    .ok_or_else(|| filter_error("a quoted string is not closed"))?;
                tokens.push(Token::Quoted(unescape(&text[at..end])?));
                at = end;
            }
            _ => {
                let end = word_end(text, at);
                tokens.push(Token::Word(text[at..end].to_string()));
                at = end;
            }
        }
    }
    Ok(tokens)
}

/// The byte index just past the closing quote of the JSON string starting at `start`.
fn quoted_end(text: &str, start: usize) -> Option<usize> {
    let mut escaped = false;
    for (offset, byte) in text.bytes().enumerate().skip(start + 1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(offset + 1),
            _ => {}
        }
    }
    None
}

/// The byte index where the bare word starting at `start` ends.
fn word_end(text: &str, start: usize) -> usize {
    text[start..]
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"'))
        .map_or(text.len(), |(offset, _)| start + offset)
}

/// Decodes a quoted JSON string (with its quotes) into its text.
fn unescape(quoted: &str) -> Result<String, FilterError> {
    serde_json::from_str(quoted)
        .map_err(|_| filter_error(format!("the string {quoted} has an invalid escape")))
}

/// A bare filter value: `true`/`false`/`null` in any case, a JSON number written canonically,
/// or otherwise a string (Entra sometimes leaves strings unquoted). `007` stays a string.
fn bare_value(word: &str) -> Value {
    match word.to_ascii_lowercase().as_str() {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" => return Value::Null,
        _ => {}
    }
    match serde_json::from_str::<Number>(word) {
        Ok(number) if number.to_string() == word => Value::Number(number),
        _ => Value::String(word.to_string()),
    }
}

/// A recursive-descent parser over filter tokens.
#[derive(Debug)]
struct FilterParser {
    tokens: std::iter::Peekable<std::vec::IntoIter<Token>>,
}

impl FilterParser {
    /// Consumes the next token when it is the keyword `keyword` (any case).
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = matches!(self.tokens.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword));
        if found {
            self.tokens.next();
        }
        found
    }

    /// `or` of `and` terms.
    fn parse_or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_and()?;
        while self.eat_keyword("or") {
            let right = self.parse_and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `and` of unary terms.
    fn parse_and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_unary()?;
        while self.eat_keyword("and") {
            let right = self.parse_unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// A parenthesised filter, `not ( ... )`, or a comparison.
    fn parse_unary(&mut self) -> Result<Filter, FilterError> {
        match self.tokens.next() {
            Some(Token::Open) => {
                let inner = self.parse_or()?;
                self.expect_close()?;
                Ok(inner)
            }
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("not") => {
                if self.tokens.next() != Some(Token::Open) {
                    return Err(filter_error(
                        "not must be followed by a filter in parentheses: not ( ... )",
                    ));
                }
                let inner = self.parse_or()?;
                self.expect_close()?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Some(Token::Word(word)) => self.parse_comparison(&word),
            Some(other) => Err(filter_error(format!(
                "expected an attribute name, found {}",
                other.describe()
            ))),
            None => Err(filter_error(
                "the filter ends where an attribute name was expected",
            )),
        }
    }

    /// Consumes the `)` closing a parenthesised filter.
    fn expect_close(&mut self) -> Result<(), FilterError> {
        match self.tokens.next() {
            Some(Token::Close) => Ok(()),
            Some(other) => Err(filter_error(format!(
                "expected ')', found {}",
                other.describe()
            ))),
            None => Err(filter_error("a '(' is not closed")),
        }
    }

    /// `attr pr` or `attr eq value`; every other operator is refused by name.
    fn parse_comparison(&mut self, attr_text: &str) -> Result<Filter, FilterError> {
        let path = parse_attr_path(attr_text)?;
        let operator = match self.tokens.next() {
            Some(Token::Word(word)) => word.to_ascii_lowercase(),
            Some(Token::OpenBracket) => {
                return Err(filter_error(format!(
                    "value filters such as {attr_text}[...] are not supported in a filter; \
                     use {attr_text}.value eq \"...\" instead"
                )));
            }
            Some(other) => {
                return Err(filter_error(format!(
                    "expected an operator after {attr_text}, found {}",
                    other.describe()
                )));
            }
            None => {
                return Err(filter_error(format!(
                    "expected an operator after {attr_text}"
                )));
            }
        };
        match operator.as_str() {
            "pr" => Ok(Filter::Present(path)),
            "eq" => Ok(Filter::Eq(path, self.parse_value()?)),
            op if REFUSED_OPERATORS.contains(&op) => Err(filter_error(format!(
                "the \"{op}\" operator is not supported; Accessrail answers eq, pr, and, or and not"
            ))),
            op => Err(filter_error(format!(
                "unknown operator \"{op}\" after {attr_text}"
            ))),
        }
    }

    /// The value after `eq`.
    fn parse_value(&mut self) -> Result<Value, FilterError> {
        match self.tokens.next() {
            Some(Token::Quoted(text)) => Ok(Value::String(text)),
            Some(Token::Word(word)) => Ok(bare_value(&word)),
            Some(other) => Err(filter_error(format!(
                "expected a value after eq, found {}",
                other.describe()
            ))),
            None => Err(filter_error("expected a value after eq")),
        }
    }
}

/// An attribute path split into its parts, keeping the original spelling.
#[derive(Debug, Clone, Copy)]
struct RawPath<'a> {
    schema: Option<&'a str>,
    attr: &'a str,
    sub: Option<&'a str>,
}

/// Splits an attribute path: strips a core User/Group URN prefix, recognises a known
/// extension URN on its own, splits `urn:...:attr` at the last ':' and `attr.sub` at the dot.
fn split_attr_path(text: &str) -> Result<RawPath<'_>, String> {
    if !starts_with_ignore_case(text, "urn:") {
        return split_dotted(text, None);
    }
    for core in [CORE_USER, CORE_GROUP] {
        if let Some(rest) = strip_prefix_ignore_case(text, core).and_then(|r| r.strip_prefix(':')) {
            return split_dotted(rest, None);
        }
    }
    if KNOWN_SCHEMAS
        .iter()
        .any(|urn| urn.eq_ignore_ascii_case(text) && !is_core_schema(urn))
    {
        return Ok(RawPath {
            schema: None,
            attr: text,
            sub: None,
        });
    }
    match text.rsplit_once(':') {
        Some((schema, rest)) if schema.len() > "urn:".len() => split_dotted(rest, Some(schema)),
        _ => Err(format!("{text} is not a valid attribute path")),
    }
}

/// Splits `attr` or `attr.sub` and checks both are attribute names.
fn split_dotted<'a>(text: &'a str, schema: Option<&'a str>) -> Result<RawPath<'a>, String> {
    let (attr, sub) = match text.split_once('.') {
        Some((attr, sub)) => (attr, Some(sub)),
        None => (text, None),
    };
    if !is_attr_name(attr) || !sub.is_none_or(is_attr_name) {
        return Err(format!("\"{text}\" is not a valid attribute path"));
    }
    Ok(RawPath { schema, attr, sub })
}

/// RFC 7643 ATTRNAME: a letter then letters, digits, '_' or '-' (and `$ref`).
fn is_attr_name(text: &str) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Is `urn` the core User or Group schema (any case)?
fn is_core_schema(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(CORE_USER) || urn.eq_ignore_ascii_case(CORE_GROUP)
}

/// `text` starts with `prefix`, ignoring ASCII case.
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    strip_prefix_ignore_case(text, prefix).is_some()
}

/// `text` without `prefix` when it starts with it, ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Does `attr eq wanted` hold for any of the resource's values at `path`?
fn eq_matches(resource: &Value, path: &AttrPath, wanted: &Value, case_exact: &[&str]) -> bool {
    let values = attribute_values(resource, path);
    if wanted.is_null() {
        return values.iter().all(|value| value.is_null());
    }
    let exact = is_case_exact(path, case_exact);
    values
        .into_iter()
        .any(|value| value_matches(value, wanted, exact))
}

/// Is `path` one of the case-exact attributes (`attr`, `attr.sub` or `schema:attr[.sub]`)?
fn is_case_exact(path: &AttrPath, case_exact: &[&str]) -> bool {
    let short = match &path.sub {
        Some(sub) => format!("{}.{sub}", path.attr),
        None => path.attr.clone(),
    };
    let full = match &path.schema {
        Some(schema) => format!("{schema}:{short}"),
        None => short.clone(),
    };
    case_exact
        .iter()
        .any(|name| name.eq_ignore_ascii_case(&short) || name.eq_ignore_ascii_case(&full))
}

/// Every value the resource holds at `path`, with multi-valued attributes flattened
/// (`emails.value` gives each email's `value`).
fn attribute_values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let base = match &path.schema {
        Some(schema) => match field(resource, schema) {
            Some(extension) => extension,
            None => return Vec::new(),
        },
        None => resource,
    };
    let Some(top) = field(base, &path.attr) else {
        return Vec::new();
    };
    let mut values = Vec::new();
    match (&path.sub, top) {
        (None, _) => flatten_into(top, &mut values),
        (Some(sub), Value::Array(items)) => {
            for item in items {
                if let Some(value) = field(item, sub) {
                    flatten_into(value, &mut values);
                }
            }
        }
        (Some(sub), _) => {
            if let Some(value) = field(top, sub) {
                flatten_into(value, &mut values);
            }
        }
    }
    values
}

/// Pushes `value`, or each element when it is an array.
fn flatten_into<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => out.extend(items),
        _ => out.push(value),
    }
}

/// SCIM `pr`: present and not null, not an empty string, array or object.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Does one resource value equal the filter's value? A complex value (such as a group member)
/// compares by its `value` sub-attribute; a filter string compares with a boolean or number
/// when it reads as one; strings ignore case unless `case_exact`.
fn value_matches(candidate: &Value, wanted: &Value, case_exact: bool) -> bool {
    match (candidate, wanted) {
        (Value::Object(fields), _) if !wanted.is_object() => {
            get_ignore_case(fields, "value").is_some_and(|v| value_matches(v, wanted, case_exact))
        }
        (Value::String(have), Value::String(want)) => {
            if case_exact {
                have == want
            } else {
                same_text(have, want)
            }
        }
        (Value::Bool(have), Value::String(text)) | (Value::String(text), Value::Bool(have)) => {
            parse_bool(text) == Some(*have)
        }
        (Value::Number(have), Value::String(text)) | (Value::String(text), Value::Number(have)) => {
            text.trim()
                .parse::<f64>()
                .is_ok_and(|number| have.as_f64() == Some(number))
        }
        (Value::Number(have), Value::Number(want)) => same_number(have, want),
        _ => candidate == wanted,
    }
}

/// Two strings equal ignoring case (Unicode lower case).
fn same_text(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Two JSON numbers equal as integers, or else as floating point.
fn same_number(a: &Number, b: &Number) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => a.as_f64().is_some() && a.as_f64() == b.as_f64(),
    }
}

/// `true` / `false` in any case.
fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The value of `key` (any case) when `value` is an object.
fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_object()
        .and_then(|fields| get_ignore_case(fields, key))
}

/// The value of `key` in `fields`, matching the key ignoring ASCII case.
fn get_ignore_case<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    fields.get(key).or_else(|| {
        fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    })
}

/// The existing key of `fields` that equals `key` ignoring ASCII case.
fn find_key(fields: &Map<String, Value>, key: &str) -> Option<String> {
    if fields.contains_key(key) {
        return Some(key.to_string());
    }
    fields
        .keys()
        .find(|name| name.eq_ignore_ascii_case(key))
        .cloned()
}

// ---------------------------------------------------------------------------------------------
// PATCH
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Add,
    Remove,
    Replace,
}

/// A PATCH path: an attribute (optionally an extension's), an optional value filter on a multi-valued
/// attribute (`members[value eq "12"]`, `emails[type eq "work"]`) and an optional sub-attribute after it
/// (`emails[type eq "work"].value`, or `name.givenName` without filter).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub path: AttrPath,
    pub filter: Option<Filter>,
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: PatchKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Why a PATCH is refused: `scim_type` is the RFC 7644 scimType for the 400 ("invalidSyntax", "invalidPath", "noTarget", "invalidValue").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    pub scim_type: &'static str,
    pub message: String,
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.scim_type)
    }
}

impl std::error::Error for PatchError {}

/// Builds a [`PatchError`].
fn patch_error(scim_type: &'static str, message: impl Into<String>) -> PatchError {
    PatchError {
        scim_type,
        message: message.into(),
    }
}

/// A malformed PATCH request body.
fn invalid_syntax(message: impl Into<String>) -> PatchError {
    patch_error("invalidSyntax", message)
}

/// A PATCH path Accessrail cannot read or that does not fit the resource.
fn invalid_path(message: impl Into<String>) -> PatchError {
    patch_error("invalidPath", message)
}

/// A PATCH path that selects nothing where something is needed.
fn no_target(message: impl Into<String>) -> PatchError {
    patch_error("noTarget", message)
}

/// A PATCH value of the wrong shape or type.
fn invalid_value(message: impl Into<String>) -> PatchError {
    patch_error("invalidValue", message)
}

/// Reads a PatchOp body: `schemas` should contain PATCH_OP (tolerate it missing), `Operations` (key any case) a
/// non-empty array; `op` any case ("add", "Add", "Replace", "remove"); `path` optional; `value` required for add/replace.
pub fn parse_patch(body: &Value) -> Result<Vec<PatchOp>, PatchError> {
    let Some(fields) = body.as_object() else {
        return Err(invalid_syntax("the PATCH body is not a JSON object"));
    };
    check_patch_schemas(fields)?;
    let operations = match get_ignore_case(fields, "Operations") {
        Some(Value::Array(operations)) if !operations.is_empty() => operations,
        Some(Value::Array(_)) => return Err(invalid_syntax("the Operations array is empty")),
        Some(_) => return Err(invalid_syntax("Operations must be an array")),
        None => return Err(invalid_syntax("the PATCH body has no Operations")),
    };
    operations
        .iter()
        .enumerate()
        .map(|(index, operation)| parse_operation(index + 1, operation))
        .collect()
}

/// Refuses a `schemas` member that does not name the PatchOp message (a missing one is tolerated).
fn check_patch_schemas(fields: &Map<String, Value>) -> Result<(), PatchError> {
    let names_patch_op = |value: &Value| {
        value
            .as_str()
            .is_some_and(|urn| urn.eq_ignore_ascii_case(PATCH_OP))
    };
    match get_ignore_case(fields, "schemas") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(schemas)) if schemas.iter().any(names_patch_op) => Ok(()),
        Some(single) if names_patch_op(single) => Ok(()),
        Some(_) => Err(invalid_syntax(format!("schemas must contain {PATCH_OP}"))),
    }
}

/// Reads the `number`-th operation of a PATCH body.
fn parse_operation(number: usize, operation: &Value) -> Result<PatchOp, PatchError> {
    let Some(fields) = operation.as_object() else {
        return Err(invalid_syntax(format!(
            "operation {number} is not a JSON object"
        )));
    };
    let kind = match get_ignore_case(fields, "op").and_then(Value::as_str) {
        Some(op) => parse_kind(op).ok_or_else(|| {
            invalid_syntax(format!(
                "operation {number}: unknown op \"{op}\" (expected add, remove or replace)"
            ))
        })?,
        None => return Err(invalid_syntax(format!("operation {number} has no op"))),
    };
    let path = match get_ignore_case(fields, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(parse_patch_path(text).map_err(|error| {
            patch_error(
                error.scim_type,
                format!("operation {number}: {}", error.message),
            )
        })?),
        Some(_) => {
            return Err(invalid_path(format!(
                "operation {number}: path must be a string"
            )));
        }
    };
    let value = get_ignore_case(fields, "value").cloned();
    if kind != PatchKind::Remove && value.is_none() {
        return Err(invalid_syntax(format!(
            "operation {number}: {} needs a value",
            kind_name(kind)
        )));
    }
    if kind == PatchKind::Remove && path.is_none() {
        return Err(no_target(format!(
            "operation {number}: remove needs a path"
        )));
    }
    Ok(PatchOp {
        op: kind,
        path,
        value,
    })
}

/// `add`, `remove` or `replace` in any case.
fn parse_kind(op: &str) -> Option<PatchKind> {
    match op.to_ascii_lowercase().as_str() {
        "add" => Some(PatchKind::Add),
        "remove" => Some(PatchKind::Remove),
        "replace" => Some(PatchKind::Replace),
        _ => None,
    }
}

/// The operation's name as RFC 7644 spells it.
fn kind_name(kind: PatchKind) -> &'static str {
    match kind {
        PatchKind::Add => "add",
        PatchKind::Remove => "remove",
        PatchKind::Replace => "replace",
    }
}

/// Parses a PATCH path: `attr`, `attr.sub`, `urn:...:attr`, `attr[filter]`, `attr[filter].sub`.
pub fn parse_patch_path(text: &str) -> Result<PatchPath, PatchError> {
    let text = text.trim();
    let refused = |error: FilterError| invalid_path(error.0);
    let Some(open) = text.find('[') else {
        let path = parse_attr_path(text).map_err(refused)?;
        return Ok(PatchPath { path, filter: None });
    };
    let close = closing_bracket(text, open)
        .ok_or_else(|| invalid_path(format!("the '[' in {text} is not closed")))?;
    let mut path = parse_attr_path(&text[..open]).map_err(refused)?;
    if path.sub.is_some() {
        return Err(invalid_path(format!(
            "a filter must follow a multi-valued attribute, not a sub-attribute: {text}"
        )));
    }
    let filter = parse_filter(&text[open + 1..close])
        .map_err(|error| invalid_path(format!("the filter in {text} is refused: {}", error.0)))?;
    let tail = &text[close + 1..];
    if !tail.is_empty() {
        let sub = tail
            .strip_prefix('.')
            .filter(|sub| is_attr_name(sub))
            .ok_or_else(|| invalid_path(format!("unexpected \"{tail}\" after the filter")))?;
        path.sub = Some(sub.to_ascii_lowercase());
    }
    Ok(PatchPath {
        path,
        filter: Some(filter),
    })
}

/// The byte index of the `]` that closes the `[` at `open`, skipping quoted strings.
fn closing_bracket(text: &str, open: usize) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (index, byte) in text.bytes().enumerate().skip(open + 1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b']' if !in_quote => return Some(index),
            _ => {}
        }
    }
    None
}

/// Applies the operations in order to a SCIM resource (JSON object), in place, all or nothing
/// (on error `resource` is unchanged).
pub fn apply_patch(resource: &mut Value, ops: &[PatchOp]) -> Result<(), PatchError> {
    let Some(fields) = resource.as_object() else {
        return Err(invalid_syntax("the resource is not a JSON object"));
    };
    let mut patched = fields.clone();
    for op in ops {
        apply_op(&mut patched, op)?;
    }
    *resource = Value::Object(patched);
    Ok(())
}

/// Where an operation lands: an attribute (optionally in an extension), an optional element
/// filter and an optional sub-attribute. Names are spellings for keys that do not exist yet;
/// existing keys are found ignoring case.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    schema: Option<&'a str>,
    attr: &'a str,
    sub: Option<&'a str>,
    filter: Option<&'a Filter>,
}

impl<'a> Target<'a> {
    /// The target of a parsed PATCH path.
    fn of_path(path: &'a PatchPath) -> Self {
        Target {
            schema: path.path.schema.as_deref(),
            attr: &path.path.attr,
            sub: path.path.sub.as_deref(),
            filter: path.filter.as_ref(),
        }
    }

    /// The target of a raw attribute path (a key inside a PATCH value without a path).
    fn of_raw(raw: RawPath<'a>) -> Self {
        Target {
            schema: raw.schema,
            attr: raw.attr,
            sub: raw.sub,
            filter: None,
        }
    }
}

/// Applies one operation.
fn apply_op(root: &mut Map<String, Value>, op: &PatchOp) -> Result<(), PatchError> {
    match &op.path {
        Some(path) => apply_target(root, op.op, Target::of_path(path), op.value.as_ref()),
        None => apply_without_path(root, op.op, op.value.as_ref()),
    }
}

/// Add or replace without a path: every key of the object value is an attribute (or a path
/// such as `name.givenName` or `urn:...:User:role`) set as if it were the operation's path.
fn apply_without_path(
    root: &mut Map<String, Value>,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    if kind == PatchKind::Remove {
        return Err(no_target("remove needs a path"));
    }
    let Some(Value::Object(fields)) = value else {
        return Err(invalid_value(
            "an operation without a path needs an object value",
        ));
    };
    for (key, field_value) in fields {
        apply_value_key(root, kind, key, field_value)?;
    }
    Ok(())
}

/// Applies one key of a no-path value.
fn apply_value_key(
    root: &mut Map<String, Value>,
    kind: PatchKind,
    key: &str,
    value: &Value,
) -> Result<(), PatchError> {
    if key.eq_ignore_ascii_case("schemas") {
        return Ok(());
    }
    if is_core_schema(key) {
        return apply_without_path(root, kind, Some(value));
    }
    let target = if is_extension_key(root, key) {
        Target {
            schema: None,
            attr: key,
            sub: None,
            filter: None,
        }
    } else {
        let raw = split_attr_path(key).map_err(invalid_path)?;
        Target::of_raw(raw)
    };
    apply_target(root, kind, target, Some(value))
}

/// Is `key` an extension schema URN the resource already carries (as a key or in `schemas`)?
fn is_extension_key(root: &Map<String, Value>, key: &str) -> bool {
    if !starts_with_ignore_case(key, "urn:") {
        return false;
    }
    let listed = matches!(get_ignore_case(root, "schemas"), Some(Value::Array(schemas))
        if schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(key))));
    listed || find_key(root, key).is_some()
}

/// Applies an operation at `target`, entering (and creating) the extension object first.
fn apply_target(
    root: &mut Map<String, Value>,
    kind: PatchKind,
    target: Target<'_>,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    if target.schema.is_none() && is_read_only(target.attr) {
        return check_unchanged(root, kind, target, value);
    }
    let Some(schema) = target.schema else {
        if kind != PatchKind::Remove && starts_with_ignore_case(target.attr, "urn:") {
            let key = key_in(root, target.attr);
            register_schema(root, &key);
        }
        return apply_in(root, kind, target, value);
    };
    let key = match find_key(root, schema) {
        Some(key) => key,
        None if kind == PatchKind::Remove => return Ok(()),
        None => {
            let key = canonical_name(schema);
            root.insert(key.clone(), Value::Object(Map::new()));
            register_schema(root, &key);
            key
        }
    };
    match root.get_mut(&key) {
        Some(Value::Object(extension)) => apply_in(extension, kind, target, value),
        _ => Err(invalid_path(format!("{key} is not an object"))),
    }
}

/// `id` and `meta` are assigned by Accessrail.
fn is_read_only(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("id") || attr.eq_ignore_ascii_case("meta")
}

/// Tolerates setting a read-only attribute to the value it already has (Okta sends the
/// group's own `id`); anything else is a mutability error.
fn check_unchanged(
    root: &Map<String, Value>,
    kind: PatchKind,
    target: Target<'_>,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let unchanged = kind != PatchKind::Remove
        && target.sub.is_none()
        && target.filter.is_none()
        && value.is_some_and(|value| get_ignore_case(root, target.attr) == Some(value));
    if unchanged {
        Ok(())
    } else {
        Err(patch_error(
            "mutability",
            format!(
                "{} is read-only: Accessrail assigns it",
                canonical_name(target.attr)
            ),
        ))
    }
}

/// Adds `urn` to the resource's `schemas` list when it has one and the URN is missing.
fn register_schema(root: &mut Map<String, Value>, urn: &str) {
    let Some(key) = find_key(root, "schemas") else {
        return;
    };
    if let Some(Value::Array(schemas)) = root.get_mut(&key) {
        let listed = schemas
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
        if !listed {
            schemas.push(Value::String(urn.to_string()));
        }
    }
}

/// The key to use in `fields` for `name`: the existing key ignoring case, else the canonical
/// spelling, else `name` as given.
fn key_in(fields: &Map<String, Value>, name: &str) -> String {
    find_key(fields, name).unwrap_or_else(|| canonical_name(name))
}

/// The canonical spelling of an attribute name or schema URN, or `name` as given.
fn canonical_name(name: &str) -> String {
    CANONICAL_NAMES
        .iter()
        .chain(KNOWN_SCHEMAS)
        .find(|known| known.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |known| (*known).to_string())
}

/// Is `key` a multi-valued attribute by name?
fn is_multi_valued(key: &str) -> bool {
    MULTI_VALUED
        .iter()
        .any(|name| name.eq_ignore_ascii_case(key))
}

/// The value an add or replace must carry.
fn need_value(kind: PatchKind, value: Option<&Value>) -> Result<&Value, PatchError> {
    value.ok_or_else(|| invalid_syntax(format!("{} needs a value", kind_name(kind))))
}

/// Applies an operation inside `fields` (the resource or an extension object).
fn apply_in(
    fields: &mut Map<String, Value>,
    kind: PatchKind,
    target: Target<'_>,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let key = key_in(fields, target.attr);
    match (target.filter, target.sub) {
        (None, None) => apply_attribute(fields, key, kind, value),
        (None, Some(sub)) => apply_sub_attribute(fields, key, sub, kind, value),
        (Some(filter), sub) => apply_filtered(fields, key, filter, sub, kind, value),
    }
}

/// Entra sends `active` as "True"/"False"; it is stored as a JSON boolean. Other values pass.
fn normalise(key: &str, value: &Value) -> Result<Value, PatchError> {
    if !key.eq_ignore_ascii_case("active") {
        return Ok(value.clone());
    }
    match value {
        Value::Bool(_) => Ok(value.clone()),
        Value::String(text) => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| invalid_value(format!("active must be true or false, not \"{text}\""))),
        other => Err(invalid_value(format!(
            "active must be true or false, not {other}"
        ))),
    }
}

/// Add, replace or remove a whole attribute (no filter, no sub-attribute).
fn apply_attribute(
    fields: &mut Map<String, Value>,
    key: String,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    if kind == PatchKind::Remove {
        remove_attribute(fields, &key, value);
        return Ok(());
    }
    let value = normalise(&key, need_value(kind, value)?)?;
    if value.is_null() {
        fields.remove(&key);
        return Ok(());
    }
    let multi = is_multi_valued(&key)
        || value.is_array()
        || matches!(fields.get(&key), Some(Value::Array(_)));
    if multi {
        let items = into_items(value);
        if kind == PatchKind::Add
            && let Some(Value::Array(existing)) = fields.get_mut(&key)
        {
            append_new(existing, items);
            return Ok(());
        }
        let mut fresh = Vec::new();
        append_new(&mut fresh, items);
        fields.insert(key, Value::Array(fresh));
        return Ok(());
    }
    set_field_at(fields, key, value);
    Ok(())
}

/// Remove without filter: the listed elements (matched by `value`) when a value is given for a
/// multi-valued attribute (Entra), else the whole attribute. An emptied array is removed.
fn remove_attribute(fields: &mut Map<String, Value>, key: &str, listed: Option<&Value>) {
    let emptied = match (listed, fields.get_mut(key)) {
        (Some(listed), Some(Value::Array(items))) if !listed.is_null() => {
            let wanted = as_items(listed);
            items.retain(|item| !wanted.iter().any(|gone| same_element(item, gone)));
            items.is_empty()
        }
        _ => true,
    };
    if emptied {
        fields.remove(key);
    }
}

/// A PATCH value as a list of elements: an array's elements, or the single value.
fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        single => vec![single],
    }
}

/// Borrowed elements of a PATCH value: an array's elements, or the single value.
fn as_items(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    }
}

/// Appends each item not already present (compared by `value`).
fn append_new(existing: &mut Vec<Value>, items: Vec<Value>) {
    for item in items {
        if !existing.iter().any(|have| same_element(have, &item)) {
            existing.push(item);
        }
    }
}

/// Two elements of a multi-valued attribute are the same when their `value`s are (a complex
/// element compared with a bare value uses its `value`); elements without one compare whole.
fn same_element(a: &Value, b: &Value) -> bool {
    match (element_identity(a), element_identity(b)) {
        (Some(x), Some(y)) => same_value(x, y),
        _ => a == b,
    }
}

/// What identifies an element: its `value` when complex, the element itself when simple.
fn element_identity(element: &Value) -> Option<&Value> {
    match element {
        Value::Object(fields) => get_ignore_case(fields, "value"),
        Value::Null | Value::Array(_) => None,
        simple => Some(simple),
    }
}

/// Element values compare ignoring case, and a number equals its decimal string ("7" and 7).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => same_text(x, y),
        (Value::String(text), Value::Number(number))
        | (Value::Number(number), Value::String(text)) => number.to_string() == text.trim(),
        _ => a == b,
    }
}

/// Sets `key` in `fields`: null removes it, an object merges into an existing object.
fn set_field_at(fields: &mut Map<String, Value>, key: String, value: Value) {
    match (fields.get_mut(&key), value) {
        (_, Value::Null) => {
            fields.remove(&key);
        }
        (Some(Value::Object(existing)), Value::Object(update)) => merge_object(existing, &update),
        (_, value) => {
            fields.insert(key, value);
        }
    }
}

/// Sets the field `name` (any case; canonical spelling when new).
fn set_field(fields: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_in(fields, name);
    set_field_at(fields, key, value);
}

/// Removes the field `name` (any case) when present.
fn remove_field(fields: &mut Map<String, Value>, name: &str) {
    if let Some(key) = find_key(fields, name) {
        fields.remove(&key);
    }
}

/// Merges `update` into `existing` sub-attribute by sub-attribute (null removes one).
fn merge_object(existing: &mut Map<String, Value>, update: &Map<String, Value>) {
    for (name, value) in update {
        set_field(existing, name, value.clone());
    }
}

/// Add, replace or remove a sub-attribute without a filter (`name.givenName`); on a
/// multi-valued attribute it applies to every element.
fn apply_sub_attribute(
    fields: &mut Map<String, Value>,
    key: String,
    sub: &str,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    match fields.get_mut(&key) {
        None | Some(Value::Null) => {
            if kind == PatchKind::Remove {
                return Ok(());
            }
            let value = need_value(kind, value)?;
            if value.is_null() {
                return Ok(());
            }
            if is_multi_valued(&key) {
                return Err(no_target(format!("{key} has no values to set {sub} on")));
            }
            let mut object = Map::new();
            set_field(&mut object, sub, value.clone());
            fields.insert(key, Value::Object(object));
            Ok(())
        }
        Some(Value::Object(object)) => change_field(object, sub, kind, value),
        Some(Value::Array(items)) => {
            if items.is_empty() && kind != PatchKind::Remove {
                return Err(no_target(format!("{key} has no values to set {sub} on")));
            }
            for item in items.iter_mut() {
                if let Value::Object(object) = item {
                    change_field(object, sub, kind, value)?;
                }
            }
            Ok(())
        }
        Some(_) => Err(invalid_path(format!("{key} has no sub-attributes"))),
    }
}

/// Sets or removes one sub-attribute of a complex value.
fn change_field(
    object: &mut Map<String, Value>,
    sub: &str,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    if kind == PatchKind::Remove {
        remove_field(object, sub);
    } else {
        set_field(object, sub, need_value(kind, value)?.clone());
    }
    Ok(())
}

/// An operation on the elements of a multi-valued attribute that match `filter`
/// (`members[value eq "12"]`, `emails[type eq "work"].value`).
fn apply_filtered(
    fields: &mut Map<String, Value>,
    key: String,
    filter: &Filter,
    sub: Option<&str>,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    match fields.get(&key) {
        Some(Value::Array(_)) => {}
        None | Some(Value::Null) => {
            if kind == PatchKind::Remove {
                return Ok(());
            }
            let value = need_value(kind, value)?;
            let mut items = Vec::new();
            add_unmatched(&mut items, &key, filter, sub, value)?;
            if !items.is_empty() {
                fields.insert(key, Value::Array(items));
            }
            return Ok(());
        }
        Some(_) => {
            return Err(invalid_path(format!(
                "{key} is not multi-valued, so it takes no [filter]"
            )));
        }
    }
    let Some(Value::Array(items)) = fields.get_mut(&key) else {
        return Err(invalid_path(format!("{key} is not multi-valued")));
    };
    let matched: Vec<bool> = items.iter().map(|item| filter.matches(item, &[])).collect();
    if kind == PatchKind::Remove {
        remove_matched(items, &matched, sub);
        if items.is_empty() {
            fields.remove(&key);
        }
        return Ok(());
    }
    let value = need_value(kind, value)?;
    if !matched.contains(&true) {
        return add_unmatched(items, &key, filter, sub, value);
    }
    for (item, _) in items.iter_mut().zip(&matched).filter(|(_, hit)| **hit) {
        let Value::Object(object) = item else {
            return Err(invalid_path(format!("the {key} values are not complex")));
        };
        match (sub, value) {
            (Some(sub), _) => set_field(object, sub, value.clone()),
            (None, Value::Object(update)) => merge_object(object, update),
            (None, _) => {
                return Err(invalid_value(format!(
                    "a filtered {key} value must be set with an object"
                )));
            }
        }
    }
    Ok(())
}

/// Removes the matched elements, or only their sub-attribute `sub`.
fn remove_matched(items: &mut Vec<Value>, matched: &[bool], sub: Option<&str>) {
    match sub {
        Some(sub) => {
            for (item, _) in items.iter_mut().zip(matched).filter(|(_, hit)| **hit) {
                if let Value::Object(object) = item {
                    remove_field(object, sub);
                }
            }
        }
        None => {
            let mut index = 0;
            items.retain(|_| {
                let keep = !matched.get(index).copied().unwrap_or(false);
                index += 1;
                keep
            });
        }
    }
}

/// Add or replace at a filter that matched nothing: with a sub-attribute and a filter made of
/// `attr eq value` terms, a new element is created (Entra replaces
/// `emails[type eq "work"].value` on a user without a work email); otherwise noTarget.
fn add_unmatched(
    items: &mut Vec<Value>,
    key: &str,
    filter: &Filter,
    sub: Option<&str>,
    value: &Value,
) -> Result<(), PatchError> {
    if value.is_null() {
        return Ok(());
    }
    match sub.and_then(|sub| element_from_filter(filter, sub, value)) {
        Some(element) => {
            items.push(element);
            Ok(())
        }
        None => Err(no_target(format!("no {key} value matches the filter"))),
    }
}

/// The element `{filter attributes..., sub: value}` when the filter is only `eq` terms joined by
/// `and` on plain attributes.
fn element_from_filter(filter: &Filter, sub: &str, value: &Value) -> Option<Value> {
    let mut terms = Vec::new();
    if !collect_eq_terms(filter, &mut terms) {
        return None;
    }
    let mut element = Map::new();
    for (path, term_value) in terms {
        if path.schema.is_some() || path.sub.is_some() || term_value.is_null() {
            return None;
        }
        set_field(&mut element, &path.attr, term_value.clone());
    }
    set_field(&mut element, sub, value.clone());
    Some(Value::Object(element))
}

/// Collects the `attr eq value` terms of a filter made only of them and `and`.
fn collect_eq_terms<'a>(filter: &'a Filter, terms: &mut Vec<(&'a AttrPath, &'a Value)>) -> bool {
    match filter {
        Filter::Eq(path, value) => {
            terms.push((path, value));
            true
        }
        Filter::And(left, right) => collect_eq_terms(left, terms) && collect_eq_terms(right, terms),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute selection
// ---------------------------------------------------------------------------------------------

/// The resource with only what `attributes` asks for (when not empty) minus `excluded` (RFC 7644 §3.9):
/// names are comma-separated by the caller already split; each may be dotted (`name.givenName`, `emails.value`)
/// or URN-qualified (core prefix stripped; an extension URN alone selects the whole extension object; URN:attr
/// selects within it); matching ignores case. `id` and `schemas` are always returned; `meta` only by default
/// or when asked. Sub-attribute selection keeps the parent with only those sub-attributes (for arrays, in each element).
pub fn project(resource: &Value, attributes: &[String], excluded: &[String]) -> Value {
    let Some(fields) = resource.as_object() else {
        return resource.clone();
    };
    let asked = selector_names(attributes);
    let mut out = if asked.is_empty() {
        fields.clone()
    } else {
        select(fields, &parse_selectors(&asked), true)
    };
    for path in parse_selectors(&selector_names(excluded)) {
        let always = path.schema.is_none() && (path.attr == "id" || path.attr == "schemas");
        if !always {
            exclude(&mut out, &path);
        }
    }
    Value::Object(out)
}

/// The non-empty, trimmed names of an `attributes` / `excludedAttributes` list.
fn selector_names(names: &[String]) -> Vec<&str> {
    names
        .iter()
        .flat_map(|name| name.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect()
}

/// The attribute paths of selector names; names that are not paths select nothing.
fn parse_selectors(names: &[&str]) -> Vec<AttrPath> {
    names
        .iter()
        .filter_map(|name| parse_attr_path(name).ok())
        .collect()
}

/// The fields `wanted` asks for (`id` and `schemas` too when `always_id`).
fn select(fields: &Map<String, Value>, wanted: &[AttrPath], always_id: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in fields {
        let lower = key.to_ascii_lowercase();
        if always_id && (lower == "id" || lower == "schemas") {
            out.insert(key.clone(), value.clone());
        } else if let Some(kept) = select_attribute(&lower, value, wanted) {
            out.insert(key.clone(), kept);
        }
    }
    out
}

/// What of one attribute `wanted` asks for: all of it, some of its sub-attributes, or (for an
/// extension object) some of its attributes.
fn select_attribute(lower_key: &str, value: &Value, wanted: &[AttrPath]) -> Option<Value> {
    let own: Vec<&AttrPath> = wanted
        .iter()
        .filter(|path| path.schema.is_none() && path.attr == lower_key)
        .collect();
    if own.iter().any(|path| path.sub.is_none()) {
        return Some(value.clone());
    }
    if !own.is_empty() {
        let subs: Vec<&str> = own.iter().filter_map(|path| path.sub.as_deref()).collect();
        return Some(keep_sub_attributes(value, &subs));
    }
    let inner: Vec<AttrPath> = wanted
        .iter()
        .filter(|path| path.schema.as_deref() == Some(lower_key))
        .map(|path| AttrPath {
            schema: None,
            attr: path.attr.clone(),
            sub: path.sub.clone(),
        })
        .collect();
    if inner.is_empty() {
        return None;
    }
    let kept = select(value.as_object()?, &inner, false);
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// A complex value with only the sub-attributes `subs` (in each element of an array).
fn keep_sub_attributes(value: &Value, subs: &[&str]) -> Value {
    let keep = |fields: &Map<String, Value>| {
        Value::Object(
            fields
                .iter()
                .filter(|(key, _)| subs.iter().any(|sub| key.eq_ignore_ascii_case(sub)))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        )
    };
    match value {
        Value::Object(fields) => keep(fields),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| match item {
                    Value::Object(fields) => keep(fields),
                    other => other.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Removes what `path` names from `fields`: an attribute, a sub-attribute (in each element of
/// an array), an extension object or an attribute inside one.
fn exclude(fields: &mut Map<String, Value>, path: &AttrPath) {
    if let Some(schema) = &path.schema {
        if let Some(key) = find_key(fields, schema)
            && let Some(Value::Object(extension)) = fields.get_mut(&key)
        {
            let inner = AttrPath {
                schema: None,
                attr: path.attr.clone(),
                sub: path.sub.clone(),
            };
            exclude(extension, &inner);
        }
        return;
    }
    let Some(key) = find_key(fields, &path.attr) else {
        return;
    };
    let Some(sub) = &path.sub else {
        fields.remove(&key);
        return;
    };
    match fields.get_mut(&key) {
        Some(Value::Object(object)) => remove_field(object, sub),
        Some(Value::Array(items)) => {
            for item in items.iter_mut() {
                if let Value::Object(object) = item {
                    remove_field(object, sub);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(attr: &str) -> AttrPath {
        AttrPath {
            schema: None,
            attr: attr.to_string(),
            sub: None,
        }
    }

    fn sub_path(attr: &str, sub: &str) -> AttrPath {
        AttrPath {
            schema: None,
            attr: attr.to_string(),
            sub: Some(sub.to_string()),
        }
    }

    fn eq(attr: &str, value: Value) -> Filter {
        Filter::Eq(path(attr), value)
    }

    fn parse(text: &str) -> Filter {
        parse_filter(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn refusal(text: &str) -> String {
        match parse_filter(text) {
            Ok(filter) => panic!("{text} parsed as {filter:?}"),
            Err(error) => error.0,
        }
    }

    fn user() -> Value {
        json!({
            "schemas": [CORE_USER, TESTRAIL_USER],
            "id": "u-1",
            "externalId": "Ext-1",
            "userName": "Alice@Example.com",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "displayName": "Alice Smith",
            "active": true,
            "emails": [
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"}
            ],
            "title": "",
            "nickName": null,
            "roles": [],
            TESTRAIL_USER: {"role": "Lead"},
            "meta": {"resourceType": "User", "lastModified": "2024-01-01T00:00:00Z"}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": [CORE_GROUP],
            "id": "g-1",
            "displayName": "QA",
            "members": [{"value": "5", "display": "Bob"}],
            "meta": {"resourceType": "Group"}
        })
    }

    fn patched(resource: &Value, body: Value) -> Result<Value, PatchError> {
        let ops = parse_patch(&body)?;
        let mut resource = resource.clone();
        apply_patch(&mut resource, &ops)?;
        Ok(resource)
    }

    fn ok_patch(resource: &Value, body: Value) -> Value {
        patched(resource, body).unwrap_or_else(|error| panic!("{error}"))
    }

    fn patch_body(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": operations})
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_string()).collect()
    }

    // Filter parsing.

    #[test]
    fn parses_a_simple_eq() {
        assert_eq!(
            parse(r#"userName eq "alice@example.com""#),
            eq("username", json!("alice@example.com"))
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let expected = Filter::Or(
            Box::new(eq("a", json!("1"))),
            Box::new(Filter::And(
                Box::new(eq("b", json!("2"))),
                Box::new(eq("c", json!("3"))),
            )),
        );
        assert_eq!(parse(r#"a eq "1" or b eq "2" and c eq "3""#), expected);
    }

    #[test]
    fn parentheses_override_precedence() {
        let expected = Filter::And(
            Box::new(Filter::Or(
                Box::new(eq("a", json!("1"))),
                Box::new(eq("b", json!("2"))),
            )),
            Box::new(Filter::Present(path("c"))),
        );
        assert_eq!(parse(r#"(a eq "1" or b eq "2") and c pr"#), expected);
    }

    #[test]
    fn not_wraps_a_parenthesised_filter() {
        assert_eq!(
            parse("not (active eq true)"),
            Filter::Not(Box::new(eq("active", json!(true))))
        );
        assert_eq!(
            parse("NOT(userName PR)"),
            Filter::Not(Box::new(Filter::Present(path("username"))))
        );
    }

    #[test]
    fn keywords_ignore_case() {
        assert_eq!(
            parse(r#"userName EQ "x" AND active Eq TRUE"#),
            Filter::And(
                Box::new(eq("username", json!("x"))),
                Box::new(eq("active", json!(true)))
            )
        );
        assert_eq!(
            parse("a pr Or b pr"),
            Filter::Or(
                Box::new(Filter::Present(path("a"))),
                Box::new(Filter::Present(path("b")))
            )
        );
    }

    #[test]
    fn quoted_strings_take_json_escapes() {
        assert_eq!(
            parse(r#"displayName eq "a\"b\\c \u00e9""#),
            eq("displayname", json!("a\"b\\c é"))
        );
        assert_eq!(
            parse(r#"displayName eq "QA (EU) and or""#),
            eq("displayname", json!("QA (EU) and or"))
        );
    }

    #[test]
    fn bare_words_are_strings() {
        assert_eq!(
            parse("userName eq alice@example.com"),
            eq("username", json!("alice@example.com"))
        );
        assert_eq!(parse("externalId eq 007"), eq("externalid", json!("007")));
    }

    #[test]
    fn literals_are_json_values() {
        assert_eq!(parse("active eq False"), eq("active", json!(false)));
        assert_eq!(parse("title eq NULL"), eq("title", Value::Null));
        assert_eq!(parse("x eq 42"), eq("x", json!(42)));
        assert_eq!(parse("x eq -3"), eq("x", json!(-3)));
    }

    #[test]
    fn core_urn_prefixes_are_stripped() {
        assert_eq!(
            parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#),
            eq("username", json!("x"))
        );
        assert_eq!(
            parse(r#"URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:GROUP:displayName eq "QA""#),
            eq("displayname", json!("QA"))
        );
        assert_eq!(
            parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName pr"),
            Filter::Present(sub_path("name", "givenname"))
        );
    }

    #[test]
    fn extension_paths_keep_their_schema() {
        let expected = AttrPath {
            schema: Some(TESTRAIL_USER.to_ascii_lowercase()),
            attr: "role".to_string(),
            sub: None,
        };
        assert_eq!(
            parse(&format!(r#"{TESTRAIL_USER}:role eq "lead""#)),
            Filter::Eq(expected, json!("lead"))
        );
    }

    #[test]
    fn dotted_paths_have_a_sub_attribute() {
        assert_eq!(
            parse(r#"name.givenName eq "Ann""#),
            Filter::Eq(sub_path("name", "givenname"), json!("Ann"))
        );
        assert_eq!(
            parse("meta.lastModified pr"),
            Filter::Present(sub_path("meta", "lastmodified"))
        );
    }

    // Filter refusals.

    #[test]
    fn refuses_other_comparison_operators_by_name() {
        for op in ["ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "NE", "Co"] {
            let message = refusal(&format!(r#"userName {op} "x""#));
            assert!(
                message.contains(&format!("\"{}\"", op.to_ascii_lowercase())),
                "{message}"
            );
        }
    }

    #[test]
    fn refuses_value_path_filters() {
        let message = refusal(r#"emails[type eq "work"]"#);
        assert!(message.contains("emails[...]"), "{message}");
    }

    #[test]
    fn refuses_unbalanced_parentheses() {
        refusal("(userName pr");
        refusal("userName pr)");
        refusal("not (userName pr");
    }

    #[test]
    fn refuses_empty_and_garbage() {
        for text in [
            "",
            "   ",
            r#""x" eq "y""#,
            "userName",
            "userName eq",
            r#"userName eq "x" and"#,
            "not userName pr",
            r#"userName eq "open"#,
            "a.b.c pr",
            "userName zz 1",
            "and",
            r#"userName eq "\q""#,
        ] {
            refusal(text);
        }
    }

    // Matching.

    #[test]
    fn user_name_matches_ignoring_case() {
        assert!(parse(r#"userName eq "alice@example.COM""#).matches(&user(), &[]));
        assert!(parse(r#"USERNAME eq "alice@example.com""#).matches(&user(), &[]));
        assert!(!parse(r#"userName eq "bob@example.com""#).matches(&user(), &[]));
    }

    #[test]
    fn case_exact_attributes_compare_exactly() {
        let exact = ["id", "externalid"];
        assert!(parse(r#"externalId eq "Ext-1""#).matches(&user(), &exact));
        assert!(!parse(r#"externalId eq "ext-1""#).matches(&user(), &exact));
        assert!(parse(r#"externalId eq "ext-1""#).matches(&user(), &[]));
        assert!(!parse(r#"id eq "U-1""#).matches(&user(), &exact));
        assert!(parse(r#"id eq "u-1""#).matches(&user(), &exact));
    }

    #[test]
    fn emails_value_matches_any_element() {
        assert!(parse(r#"emails.value eq "ALICE@home.example""#).matches(&user(), &[]));
        assert!(!parse(r#"emails.value eq "x@example.com""#).matches(&user(), &[]));
        assert!(parse(r#"emails.type eq "home""#).matches(&user(), &[]));
    }

    #[test]
    fn members_eq_compares_each_member_value() {
        assert!(parse(r#"id eq "g-1" and members eq "5""#).matches(&group(), &[]));
        assert!(!parse(r#"members eq "6""#).matches(&group(), &[]));
    }

    #[test]
    fn present_needs_a_non_empty_value() {
        let resource = user();
        assert!(parse("userName pr").matches(&resource, &[]));
        assert!(parse("emails pr").matches(&resource, &[]));
        assert!(parse("name.givenName pr").matches(&resource, &[]));
        assert!(!parse("title pr").matches(&resource, &[]));
        assert!(!parse("nickName pr").matches(&resource, &[]));
        assert!(!parse("roles pr").matches(&resource, &[]));
        assert!(!parse("locale pr").matches(&resource, &[]));
    }

    #[test]
    fn booleans_compare_as_booleans() {
        assert!(parse("active eq true").matches(&user(), &[]));
        assert!(parse(r#"active eq "True""#).matches(&user(), &[]));
        assert!(!parse("active eq false").matches(&user(), &[]));
    }

    #[test]
    fn numbers_compare_as_numbers() {
        let resource = json!({"count": 3, "code": "12"});
        assert!(parse("count eq 3").matches(&resource, &[]));
        assert!(parse(r#"count eq "3""#).matches(&resource, &[]));
        assert!(parse("code eq 12").matches(&resource, &[]));
        assert!(!parse("count eq 4").matches(&resource, &[]));
    }

    #[test]
    fn eq_null_matches_a_missing_attribute() {
        assert!(parse("locale eq null").matches(&user(), &[]));
        assert!(!parse("userName eq null").matches(&user(), &[]));
    }

    #[test]
    fn extension_attributes_match_through_their_urn() {
        let lower = TESTRAIL_USER.to_ascii_lowercase();
        assert!(parse(&format!(r#"{lower}:ROLE eq "lead""#)).matches(&user(), &[]));
        assert!(!parse(&format!(r#"{TESTRAIL_USER}:role eq "guest""#)).matches(&user(), &[]));
        assert!(parse(&format!("{TESTRAIL_USER} pr")).matches(&user(), &[]));
    }

    #[test]
    fn logical_operators_combine() {
        let resource = user();
        assert!(parse(r#"userName eq "x" or active eq true"#).matches(&resource, &[]));
        assert!(!parse(r#"userName eq "x" and active eq true"#).matches(&resource, &[]));
        assert!(parse(r#"not (userName eq "x")"#).matches(&resource, &[]));
    }

    #[test]
    fn single_eq_is_recognised() {
        let filter = parse(r#"externalId eq "Ext-1""#);
        assert_eq!(
            filter.as_single_eq(),
            Some((&path("externalid"), &json!("Ext-1")))
        );
        assert_eq!(parse("userName pr").as_single_eq(), None);
        assert_eq!(parse(r#"a eq "1" and b eq "2""#).as_single_eq(), None);
        assert_eq!(parse(r#"not (a eq "1")"#).as_single_eq(), None);
    }

    // PATCH.

    #[test]
    fn okta_deactivates_without_a_path() {
        let body = patch_body(json!([{"op": "replace", "value": {"active": false}}]));
        assert_eq!(ok_patch(&user(), body)["active"], json!(false));
    }

    #[test]
    fn okta_renames_a_group_sending_its_own_id() {
        let body = patch_body(json!([
            {"op": "replace", "value": {"id": "g-1", "displayName": "New"}}
        ]));
        let after = ok_patch(&group(), body);
        assert_eq!(after["displayName"], json!("New"));
        assert_eq!(after["id"], json!("g-1"));
    }

    #[test]
    fn changing_id_or_meta_is_a_mutability_error() {
        let rename = patch_body(json!([{"op": "replace", "value": {"id": "g-2"}}]));
        assert_eq!(
            patched(&group(), rename).map_err(|e| e.scim_type),
            Err("mutability")
        );
        let by_path = patch_body(json!([{"op": "replace", "path": "id", "value": "g-2"}]));
        assert_eq!(
            patched(&group(), by_path).map_err(|e| e.scim_type),
            Err("mutability")
        );
        let meta = patch_body(json!([
            {"op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z"}
        ]));
        assert_eq!(
            patched(&user(), meta).map_err(|e| e.scim_type),
            Err("mutability")
        );
        let remove = patch_body(json!([{"op": "remove", "path": "id"}]));
        assert_eq!(
            patched(&user(), remove).map_err(|e| e.scim_type),
            Err("mutability")
        );
    }

    #[test]
    fn okta_adds_members_once() {
        let body = patch_body(json!([
            {"op": "add", "path": "members", "value": [{"value": "7", "display": "x"}, {"value": "5"}]}
        ]));
        let after = ok_patch(&group(), body.clone());
        assert_eq!(
            after["members"],
            json!([{"value": "5", "display": "Bob"}, {"value": "7", "display": "x"}])
        );
        assert_eq!(ok_patch(&after, body), after);
    }

    #[test]
    fn add_accepts_a_single_member_object() {
        let body = patch_body(json!([{"op": "add", "path": "members", "value": {"value": "9"}}]));
        let after = ok_patch(&group(), body);
        assert_eq!(after["members"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn okta_removes_a_member_by_filter() {
        let with_seven = json!({"id": "g-1", "members": [{"value": "5"}, {"value": "7"}]});
        let body = patch_body(json!([{"op": "remove", "path": "members[value eq \"7\"]"}]));
        let after = ok_patch(&with_seven, body.clone());
        assert_eq!(after["members"], json!([{"value": "5"}]));
        assert_eq!(ok_patch(&after, body), after, "removing again is a no-op");
    }

    #[test]
    fn removing_the_last_member_unassigns_members() {
        let body = patch_body(json!([{"op": "remove", "path": "members[value eq \"5\"]"}]));
        assert_eq!(ok_patch(&group(), body).get("members"), None);
    }

    #[test]
    fn entra_capitalised_ops_dotted_keys_and_false_string() {
        let body = patch_body(json!([
            {"op": "Replace", "value": {"name.givenName": "Ann", "active": "False"}}
        ]));
        let after = ok_patch(&user(), body);
        assert_eq!(after["active"], json!(false));
        assert_eq!(
            after["name"],
            json!({"givenName": "Ann", "familyName": "Smith"})
        );
    }

    #[test]
    fn active_strings_become_booleans_and_other_values_are_refused() {
        let body = patch_body(json!([{"op": "Replace", "path": "active", "value": "True"}]));
        let inactive = json!({"id": "u-1", "active": false});
        assert_eq!(ok_patch(&inactive, body)["active"], json!(true));
        for bad in [json!("maybe"), json!(1), Value::Null] {
            let body = patch_body(json!([{"op": "replace", "value": {"active": bad}}]));
            assert_eq!(
                patched(&user(), body).map_err(|e| e.scim_type),
                Err("invalidValue")
            );
        }
    }

    #[test]
    fn entra_removes_members_listed_in_the_value() {
        let resource =
            json!({"id": "g-1", "members": [{"value": "5"}, {"value": "12"}, {"value": "13"}]});
        let body = patch_body(json!([
            {"op": "Remove", "path": "members", "value": [{"value": "12"}, {"value": "13"}]}
        ]));
        assert_eq!(
            ok_patch(&resource, body)["members"],
            json!([{"value": "5"}])
        );
    }

    #[test]
    fn remove_without_value_unassigns_the_attribute() {
        let body = patch_body(json!([{"op": "remove", "path": "members"}]));
        assert_eq!(ok_patch(&group(), body).get("members"), None);
        let title = patch_body(json!([{"op": "remove", "path": "displayName"}]));
        assert_eq!(ok_patch(&user(), title).get("displayName"), None);
    }

    #[test]
    fn replace_without_filter_replaces_the_whole_array() {
        let body = patch_body(json!([
            {"op": "replace", "path": "emails", "value": [{"value": "new@example.com", "primary": true}]}
        ]));
        assert_eq!(
            ok_patch(&user(), body)["emails"],
            json!([{"value": "new@example.com", "primary": true}])
        );
    }

    #[test]
    fn many_operations_apply_in_order() {
        let body = patch_body(json!([
            {"op": "add", "path": "members", "value": [{"value": "7"}]},
            {"op": "replace", "path": "displayName", "value": "QA EU"},
            {"op": "remove", "path": "members[value eq \"5\"]"},
            {"op": "add", "path": "members", "value": [{"value": "8"}]}
        ]));
        let after = ok_patch(&group(), body);
        assert_eq!(after["displayName"], json!("QA EU"));
        assert_eq!(after["members"], json!([{"value": "7"}, {"value": "8"}]));
    }

    #[test]
    fn replaces_the_work_email_value() {
        let body = patch_body(json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a.smith@example.com"}
        ]));
        let after = ok_patch(&user(), body);
        assert_eq!(
            after["emails"][0],
            json!({"value": "a.smith@example.com", "type": "work", "primary": true})
        );
        assert_eq!(after["emails"][1]["value"], json!("alice@home.example"));
    }

    #[test]
    fn replacing_a_missing_work_email_creates_it() {
        let resource =
            json!({"id": "u-1", "emails": [{"value": "a@home.example", "type": "home"}]});
        let body = patch_body(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "a@example.com"}
        ]));
        assert_eq!(
            ok_patch(&resource, body)["emails"][1],
            json!({"type": "work", "value": "a@example.com"})
        );
        let bare = json!({"id": "u-1"});
        let body = patch_body(json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@example.com"}
        ]));
        assert_eq!(
            ok_patch(&bare, body)["emails"],
            json!([{"type": "work", "value": "a@example.com"}])
        );
    }

    #[test]
    fn unmatched_filter_without_sub_attribute_is_no_target() {
        let body = patch_body(json!([
            {"op": "replace", "path": "members[value eq \"99\"]", "value": {"display": "x"}}
        ]));
        assert_eq!(
            patched(&group(), body).map_err(|e| e.scim_type),
            Err("noTarget")
        );
    }

    #[test]
    fn filtered_replace_merges_into_matching_elements() {
        let body = patch_body(json!([
            {"op": "replace", "path": "members[value eq \"5\"]", "value": {"display": "Robert"}}
        ]));
        assert_eq!(
            ok_patch(&group(), body)["members"],
            json!([{"value": "5", "display": "Robert"}])
        );
    }

    #[test]
    fn filtered_remove_of_a_sub_attribute_keeps_the_element() {
        let body =
            patch_body(json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]));
        let after = ok_patch(&user(), body);
        assert_eq!(
            after["emails"][0],
            json!({"value": "alice@example.com", "type": "work"})
        );
    }

    #[test]
    fn name_given_name_path_keeps_the_family_name() {
        let body = patch_body(json!([{"op": "replace", "path": "name.givenName", "value": "Ann"}]));
        assert_eq!(
            ok_patch(&user(), body)["name"],
            json!({"givenName": "Ann", "familyName": "Smith"})
        );
        let fresh = json!({"id": "u-2"});
        let body = patch_body(json!([{"op": "add", "path": "name.familyname", "value": "Lee"}]));
        assert_eq!(ok_patch(&fresh, body)["name"], json!({"familyName": "Lee"}));
    }

    #[test]
    fn complex_values_merge_without_a_path() {
        let body = patch_body(json!([
            {"op": "replace", "value": {"name": {"givenName": "Ann"}, "NickName": "A"}}
        ]));
        let after = ok_patch(&user(), body);
        assert_eq!(
            after["name"],
            json!({"givenName": "Ann", "familyName": "Smith"})
        );
        assert_eq!(after["nickName"], json!("A"));
    }

    #[test]
    fn extension_role_path_creates_the_extension_object() {
        let resource = json!({"schemas": [CORE_USER], "id": "u-1", "userName": "a"});
        let path = format!("{}:role", TESTRAIL_USER.to_ascii_lowercase());
        let body = patch_body(json!([{"op": "add", "path": path, "value": "Tester"}]));
        let after = ok_patch(&resource, body);
        assert_eq!(after[TESTRAIL_USER], json!({"role": "Tester"}));
        assert_eq!(after["schemas"], json!([CORE_USER, TESTRAIL_USER]));
    }

    #[test]
    fn extension_values_without_a_path_merge() {
        let qualified = format!("{TESTRAIL_USER}:role");
        let body = patch_body(json!([{"op": "replace", "value": {qualified: "Guest"}}]));
        assert_eq!(
            ok_patch(&user(), body)[TESTRAIL_USER]["role"],
            json!("Guest")
        );
        let body = patch_body(json!([
            {"op": "replace", "value": {TESTRAIL_USER: {"team": "EU"}}}
        ]));
        assert_eq!(
            ok_patch(&user(), body)[TESTRAIL_USER],
            json!({"role": "Lead", "team": "EU"})
        );
    }

    #[test]
    fn core_qualified_keys_apply_to_the_resource() {
        let body = patch_body(json!([
            {"op": "replace", "value": {
                "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "A. Smith",
                CORE_USER: {"title": "QA"}
            }}
        ]));
        let after = ok_patch(&user(), body);
        assert_eq!(after["displayName"], json!("A. Smith"));
        assert_eq!(after["title"], json!("QA"));
    }

    #[test]
    fn a_failing_operation_leaves_the_resource_unchanged() {
        let body = patch_body(json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "active", "value": "perhaps"}
        ]));
        let ops = parse_patch(&body).unwrap_or_default();
        assert_eq!(ops.len(), 2);
        let mut resource = user();
        let error = apply_patch(&mut resource, &ops).err();
        assert_eq!(error.map(|e| e.scim_type), Some("invalidValue"));
        assert_eq!(resource, user());
    }

    #[test]
    fn parse_refuses_a_body_without_operations() {
        for body in [
            json!({"schemas": [PATCH_OP]}),
            json!({"schemas": [PATCH_OP], "Operations": []}),
            json!({"schemas": [PATCH_OP], "Operations": {}}),
            json!([]),
        ] {
            assert_eq!(
                parse_patch(&body).map_err(|e| e.scim_type),
                Err("invalidSyntax")
            );
        }
    }

    #[test]
    fn parse_refuses_bad_operations() {
        let cases = [
            (
                json!([{"op": "move", "path": "title", "value": "x"}]),
                "invalidSyntax",
            ),
            (json!([{"path": "title", "value": "x"}]), "invalidSyntax"),
            (json!([{"op": "add", "path": "title"}]), "invalidSyntax"),
            (json!([{"op": "replace"}]), "invalidSyntax"),
            (json!([{"op": "remove"}]), "noTarget"),
            (
                json!([{"op": "remove", "path": "emails[type eq"}]),
                "invalidPath",
            ),
            (
                json!([{"op": "remove", "path": "emails[type co \"w\"]"}]),
                "invalidPath",
            ),
            (json!([{"op": "remove", "path": "a.b.c"}]), "invalidPath"),
            (
                json!([{"op": "remove", "path": "emails[type eq \"w\"]x"}]),
                "invalidPath",
            ),
        ];
        for (operations, scim_type) in cases {
            let body = patch_body(operations.clone());
            assert_eq!(
                parse_patch(&body).map_err(|e| e.scim_type),
                Err(scim_type),
                "{operations}"
            );
        }
    }

    #[test]
    fn parse_reads_schemas_and_key_case_leniently() {
        let without_schemas =
            json!({"operations": [{"Op": "Add", "Path": "title", "Value": "QA"}]});
        let ops = parse_patch(&without_schemas).unwrap_or_default();
        assert_eq!(
            ops,
            vec![PatchOp {
                op: PatchKind::Add,
                path: Some(PatchPath {
                    path: path("title"),
                    filter: None
                }),
                value: Some(json!("QA")),
            }]
        );
        let wrong_schema =
            json!({"schemas": [CORE_USER], "Operations": [{"op": "remove", "path": "title"}]});
        assert_eq!(
            parse_patch(&wrong_schema).map_err(|e| e.scim_type),
            Err("invalidSyntax")
        );
    }

    #[test]
    fn parse_reads_filtered_paths() {
        let parsed = parse_patch_path(r#"emails[type eq "work"].value"#);
        assert_eq!(
            parsed,
            Ok(PatchPath {
                path: sub_path("emails", "value"),
                filter: Some(eq("type", json!("work"))),
            })
        );
        let bracket_in_value = parse_patch_path(r#"members[display eq "a]b"]"#);
        assert_eq!(
            bracket_in_value.map(|p| p.filter),
            Ok(Some(eq("display", json!("a]b"))))
        );
    }

    // Attribute selection.

    #[test]
    fn attributes_keep_id_schemas_and_what_was_asked() {
        let out = project(&user(), &names(&["userName"]), &[]);
        assert_eq!(
            out,
            json!({"schemas": [CORE_USER, TESTRAIL_USER], "id": "u-1", "userName": "Alice@Example.com"})
        );
    }

    #[test]
    fn meta_is_returned_by_default_or_when_asked() {
        assert!(project(&user(), &[], &[]).get("meta").is_some());
        assert!(
            project(&user(), &names(&["userName"]), &[])
                .get("meta")
                .is_none()
        );
        assert!(
            project(&user(), &names(&["userName", "META"]), &[])
                .get("meta")
                .is_some()
        );
        assert_eq!(project(&user(), &[], &[]), user());
    }

    #[test]
    fn excluded_attributes_are_dropped() {
        let out = project(&user(), &[], &names(&["emails", "id", "name.familyName"]));
        assert!(out.get("emails").is_none());
        assert_eq!(out["id"], json!("u-1"));
        assert_eq!(out["name"], json!({"givenName": "Alice"}));
        assert!(out.get("userName").is_some());
        let members = project(&group(), &[], &names(&["members"]));
        assert!(members.get("members").is_none());
    }

    #[test]
    fn sub_attributes_keep_the_parent_with_only_them() {
        let out = project(&user(), &names(&["name.givenName", "emails.value"]), &[]);
        assert_eq!(out["name"], json!({"givenName": "Alice"}));
        assert_eq!(
            out["emails"],
            json!([{"value": "alice@example.com"}, {"value": "alice@home.example"}])
        );
    }

    #[test]
    fn urn_qualified_names_select_core_and_extension_attributes() {
        let out = project(
            &user(),
            &names(&["urn:ietf:params:scim:schemas:core:2.0:User:userName"]),
            &[],
        );
        assert_eq!(out["userName"], json!("Alice@Example.com"));
        assert!(out.get(TESTRAIL_USER).is_none());
        let whole = project(&user(), &names(&[&TESTRAIL_USER.to_ascii_lowercase()]), &[]);
        assert_eq!(whole[TESTRAIL_USER], json!({"role": "Lead"}));
        let role = project(&user(), &names(&[&format!("{TESTRAIL_USER}:Role")]), &[]);
        assert_eq!(role[TESTRAIL_USER], json!({"role": "Lead"}));
        let excluded = project(&user(), &[], &names(&[&format!("{TESTRAIL_USER}:role")]));
        assert_eq!(excluded[TESTRAIL_USER], json!({}));
    }

    #[test]
    fn selection_ignores_case() {
        let out = project(&user(), &names(&["USERNAME", "DisplayName"]), &[]);
        assert_eq!(out["userName"], json!("Alice@Example.com"));
        assert_eq!(out["displayName"], json!("Alice Smith"));
        assert!(out.get("emails").is_none());
    }

    #[test]
    fn hostile_filters_are_refused_not_followed() {
        let deep = format!("{}userName pr{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse_filter(&deep).is_err());
        let nots = format!("{}userName pr{}", "not (".repeat(5000), ")".repeat(5000));
        assert!(parse_filter(&nots).is_err());
        let long = vec!["userName pr"; 2000].join(" or ");
        assert!(parse_filter(&long).is_err());
        let fine = format!("{}userName pr{}", "(".repeat(10), ")".repeat(10));
        assert!(parse_filter(&fine).is_ok());
    }
}
