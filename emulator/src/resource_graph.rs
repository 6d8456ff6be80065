//! Resource Graph: a small, honest subset of KQL over the `resources` and `authorizationresources` tables,
//! with `$skipToken` paging, the per-user quota and a freshness lag. A query outside the subset is answered
//! with 400 and the list of what is supported, never with a silently wrong result.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::app::{App, lock, str_at};
use crate::arm::{self, Outcome, Request};
use crate::limits::hh_mm_ss;
use crate::store::{GraphTable, rfc3339};

pub const SUPPORTED: &str = "Supported by this emulator: tables `resources` and `authorizationresources`; operators `where`, `project`, `order by`/`sort by` (asc|desc), `limit`/`take`; `where` conditions joined by `and`, each one of: <expr> =~ '<s>', <expr> !~ '<s>', <expr> == '<s>', <expr> != '<s>', <expr> in ('a', ...), <expr> in~ ('a', ...), <expr> !in ('a', ...), <expr> !in~ ('a', ...), isnotempty(<expr>), isempty(<expr>); <expr> is a column path (a.b.c, a['b']) optionally wrapped in tolower(), toupper() or tostring(); `project` lists column paths.";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Path(Vec<String>),
    Func(String, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    EqCi,
    NeqCi,
    Eq,
    Neq,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    Cmp {
        lhs: Expr,
        op: CmpOp,
        rhs: String,
    },
    In {
        lhs: Expr,
        list: Vec<String>,
        case_insensitive: bool,
        negate: bool,
    },
    IsNotEmpty(Expr),
    IsEmpty(Expr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Where(Vec<Cond>),
    Project(Vec<(String, Expr)>),
    Order(Vec<(String, bool)>),
    Limit(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub table: GraphTable,
    pub ops: Vec<Op>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(usize),
    Sym(&'static str),
}

fn tokenize(input: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // `in~` is one operator.
            if word == "in" && chars.get(i) == Some(&'~') {
                i += 1;
                out.push(Tok::Sym("in~"));
            } else {
                out.push(Tok::Ident(word));
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            out.push(Tok::Num(
                n.parse()
                    .map_err(|_| format!("number `{n}` is too large"))?,
            ));
        } else if c == '\'' || c == '"' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        if let Some(n) = chars.get(i + 1) {
                            s.push(*n);
                        }
                        i += 2;
                    }
                    Some(ch) if *ch == quote => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let three: String = chars[i..chars.len().min(i + 4)].iter().collect();
            if three == "!in~" {
                out.push(Tok::Sym("!in~"));
                i += 4;
                continue;
            }
            let sym = match two.as_str() {
                "=~" => Some("=~"),
                "!~" => Some("!~"),
                "==" => Some("=="),
                "!=" => Some("!="),
                _ => None,
            };
            if let Some(sym) = sym {
                out.push(Tok::Sym(sym));
                i += 2;
                continue;
            }
            if two == "!i" && chars.get(i + 2) == Some(&'n') {
                out.push(Tok::Sym("!in"));
                i += 3;
                continue;
            }
            let single = match c {
                '|' => "|",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '.' => ".",
                '[' => "[",
                ']' => "]",
                _ => return Err(format!("unexpected character `{c}`")),
            };
            out.push(Tok::Sym(single));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// Function nesting depth, bounded so no query can exhaust the stack.
    depth: usize,
}

const MAX_NESTING: usize = 8;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Sym(s)) if s == sym => Ok(()),
            other => Err(format!(
                "expected `{sym}`, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(w)) => Ok(w),
            other => Err(format!(
                "expected a name, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn path(&mut self) -> Result<Vec<String>, String> {
        let mut path = vec![self.ident()?];
        loop {
            match self.peek() {
                Some(Tok::Sym(".")) => {
                    self.pos += 1;
                    path.push(self.ident()?);
                }
                Some(Tok::Sym("[")) => {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Str(s)) => path.push(s),
                        other => {
                            return Err(format!(
                                "expected a quoted key in [...], found {}",
                                describe(other.as_ref())
                            ));
                        }
                    }
                    self.expect_sym("]")?;
                }
                _ => return Ok(path),
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        if let (Some(Tok::Ident(w)), Some(Tok::Sym("("))) =
            (self.toks.get(self.pos), self.toks.get(self.pos + 1))
        {
            let f = w.to_ascii_lowercase();
            if ["tolower", "toupper", "tostring"].contains(&f.as_str()) {
                if self.depth >= MAX_NESTING {
                    return Err(format!("functions nest deeper than {MAX_NESTING}"));
                }
                self.pos += 2;
                self.depth += 1;
                let inner = self.expr()?;
                self.depth -= 1;
                self.expect_sym(")")?;
                return Ok(Expr::Func(f, Box::new(inner)));
            }
            return Err(format!("function `{w}` is not supported"));
        }
        Ok(Expr::Path(self.path()?))
    }

    fn string_list(&mut self) -> Result<Vec<String>, String> {
        self.expect_sym("(")?;
        let mut list = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Str(s)) => list.push(s),
                other => {
                    return Err(format!(
                        "expected a string in the list, found {}",
                        describe(other.as_ref())
                    ));
                }
            }
            match self.next() {
                Some(Tok::Sym(",")) => {}
                Some(Tok::Sym(")")) => return Ok(list),
                other => {
                    return Err(format!(
                        "expected `,` or `)`, found {}",
                        describe(other.as_ref())
                    ));
                }
            }
        }
    }

    fn condition(&mut self) -> Result<Cond, String> {
        for (name, empty) in [("isnotempty", false), ("isempty", true)] {
            if matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(name)) {
                self.pos += 1;
                self.expect_sym("(")?;
                let e = self.expr()?;
                self.expect_sym(")")?;
                return Ok(if empty {
                    Cond::IsEmpty(e)
                } else {
                    Cond::IsNotEmpty(e)
                });
            }
        }
        let lhs = self.expr()?;
        match self.next() {
            Some(Tok::Sym(op @ ("=~" | "!~" | "==" | "!="))) => {
                let rhs = match self.next() {
                    Some(Tok::Str(s)) => s,
                    other => {
                        return Err(format!(
                            "expected a string after `{op}`, found {}",
                            describe(other.as_ref())
                        ));
                    }
                };
                let op = match op {
                    "=~" => CmpOp::EqCi,
                    "!~" => CmpOp::NeqCi,
                    "==" => CmpOp::Eq,
                    _ => CmpOp::Neq,
                };
                Ok(Cond::Cmp { lhs, op, rhs })
            }
            Some(Tok::Ident(w)) if w == "in" => Ok(Cond::In {
                lhs,
                list: self.string_list()?,
                case_insensitive: false,
                negate: false,
            }),
            Some(Tok::Sym("in~")) => Ok(Cond::In {
                lhs,
                list: self.string_list()?,
                case_insensitive: true,
                negate: false,
            }),
            Some(Tok::Sym("!in")) => Ok(Cond::In {
                lhs,
                list: self.string_list()?,
                case_insensitive: false,
                negate: true,
            }),
            Some(Tok::Sym("!in~")) => Ok(Cond::In {
                lhs,
                list: self.string_list()?,
                case_insensitive: true,
                negate: true,
            }),
            other => Err(format!(
                "expected a comparison operator, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn operator(&mut self) -> Result<Op, String> {
        let word = self.ident()?.to_ascii_lowercase();
        match word.as_str() {
            "where" => {
                let mut conds = vec![self.condition()?];
                while self.keyword("and") {
                    conds.push(self.condition()?);
                }
                if matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("or")) {
                    return Err("`or` is not supported".into());
                }
                Ok(Op::Where(conds))
            }
            "project" => {
                let mut cols = Vec::new();
                loop {
                    let path = self.path()?;
                    let name = path.last().cloned().unwrap_or_default();
                    cols.push((name, Expr::Path(path)));
                    if matches!(self.peek(), Some(Tok::Sym(","))) {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Ok(Op::Project(cols))
            }
            "order" | "sort" => {
                if !self.keyword("by") {
                    return Err(format!("expected `by` after `{word}`"));
                }
                let mut keys = Vec::new();
                loop {
                    let col = self.ident()?;
                    // KQL sorts descending unless told otherwise.
                    let asc = if self.keyword("asc") {
                        true
                    } else {
                        let _ = self.keyword("desc");
                        false
                    };
                    keys.push((col, asc));
                    if matches!(self.peek(), Some(Tok::Sym(","))) {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Ok(Op::Order(keys))
            }
            "limit" | "take" => match self.next() {
                Some(Tok::Num(n)) => Ok(Op::Limit(n)),
                other => Err(format!(
                    "expected a number after `{word}`, found {}",
                    describe(other.as_ref())
                )),
            },
            other => Err(format!("operator `{other}` is not supported")),
        }
    }
}

fn describe(tok: Option<&Tok>) -> String {
    match tok {
        None => "the end of the query".into(),
        Some(Tok::Ident(w)) => format!("`{w}`"),
        Some(Tok::Str(s)) => format!("'{s}'"),
        Some(Tok::Num(n)) => n.to_string(),
        Some(Tok::Sym(s)) => format!("`{s}`"),
    }
}

/// Parses a query of the supported subset.
pub fn parse(query: &str) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokenize(query)?,
        pos: 0,
        depth: 0,
    };
    let table = match p.ident()?.to_ascii_lowercase().as_str() {
        "resources" => GraphTable::Resources,
        "authorizationresources" => GraphTable::AuthorizationResources,
        other => return Err(format!("table `{other}` is not supported")),
    };
    let mut ops = Vec::new();
    while p.peek().is_some() {
        p.expect_sym("|")?;
        ops.push(p.operator()?);
    }
    Ok(Query { table, ops })
}

fn lookup<'a>(row: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = row;
    for key in path {
        v = v.as_object()?.get(key)?;
    }
    Some(v)
}

fn to_kql_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn eval(expr: &Expr, row: &Value) -> Value {
    match expr {
        Expr::Path(path) => lookup(row, path).cloned().unwrap_or(Value::Null),
        Expr::Func(f, inner) => {
            let s = to_kql_string(Some(&eval(inner, row)));
            Value::String(match f.as_str() {
                "tolower" => s.to_lowercase(),
                "toupper" => s.to_uppercase(),
                _ => s,
            })
        }
    }
}

fn holds(cond: &Cond, row: &Value) -> bool {
    match cond {
        Cond::Cmp { lhs, op, rhs } => {
            let l = to_kql_string(Some(&eval(lhs, row)));
            match op {
                CmpOp::EqCi => l.to_lowercase() == rhs.to_lowercase(),
                CmpOp::NeqCi => l.to_lowercase() != rhs.to_lowercase(),
                CmpOp::Eq => l == *rhs,
                CmpOp::Neq => l != *rhs,
            }
        }
        Cond::In {
            lhs,
            list,
            case_insensitive,
            negate,
        } => {
            let l = to_kql_string(Some(&eval(lhs, row)));
            let found = list.iter().any(|x| {
                if *case_insensitive {
                    x.to_lowercase() == l.to_lowercase()
                } else {
                    *x == l
                }
            });
            found != *negate
        }
        Cond::IsNotEmpty(e) => !to_kql_string(Some(&eval(e, row))).is_empty(),
        Cond::IsEmpty(e) => to_kql_string(Some(&eval(e, row))).is_empty(),
    }
}

/// Runs the query's operators over rows (already restricted to what the caller may see).
pub fn run(query: &Query, mut rows: Vec<Value>) -> (Vec<Value>, bool) {
    let mut has_id = true;
    for op in &query.ops {
        match op {
            Op::Where(conds) => rows.retain(|r| conds.iter().all(|c| holds(c, r))),
            Op::Project(cols) => {
                has_id = cols.iter().any(|(name, _)| name == "id");
                rows = rows
                    .into_iter()
                    .map(|r| {
                        let mut out = Map::new();
                        for (name, expr) in cols {
                            out.insert(name.clone(), eval(expr, &r));
                        }
                        Value::Object(out)
                    })
                    .collect();
            }
            Op::Order(keys) => rows.sort_by(|a, b| {
                for (col, asc) in keys {
                    let (x, y) = (to_kql_string(a.get(col)), to_kql_string(b.get(col)));
                    let ord = x.cmp(&y);
                    if ord != std::cmp::Ordering::Equal {
                        return if *asc { ord } else { ord.reverse() };
                    }
                }
                std::cmp::Ordering::Equal
            }),
            Op::Limit(n) => rows.truncate(*n),
        }
    }
    (rows, has_id)
}

fn rg_error(status: StatusCode, code: &str, detail_code: &str, message: &str) -> Outcome {
    Outcome::json(
        status,
        json!({"error": {
            "code": code,
            "message": format!(
                "Please provide below info when asking for support: timestamp = {}, correlationId = {}.",
                rfc3339(time::OffsetDateTime::now_utc()),
                uuid::Uuid::new_v4()
            ),
            "details": [
                {"code": detail_code, "message": message}
            ]
        }}),
    )
}

fn skip_token(offset: usize, query: &str) -> String {
    let digest = crate::crypto::sha256(query.as_bytes());
    let tag: String = crate::crypto::hex(&digest[..8]);
    STANDARD.encode(json!({"offset": offset, "query": tag}).to_string())
}

fn read_skip_token(token: &str, query: &str) -> Option<usize> {
    let raw = STANDARD.decode(token.as_bytes()).ok()?;
    let value: Value = serde_json::from_slice(&raw).ok()?;
    let digest = crate::crypto::sha256(query.as_bytes());
    let tag: String = crate::crypto::hex(&digest[..8]);
    (value.get("query")?.as_str()? == tag).then_some(())?;
    usize::try_from(value.get("offset")?.as_u64()?).ok()
}

/// `POST /providers/Microsoft.ResourceGraph/resources`.
pub(crate) fn handle(app: &App, req: &Request<'_>) -> (Outcome, Option<String>) {
    let claims = match arm::authenticate(app, req.headers, false) {
        Ok(c) => c,
        Err(e) => return (e, None),
    };
    let caller = Some(claims.oid.clone());
    (handle_authenticated(app, req, &claims), caller)
}

fn handle_authenticated(app: &App, req: &Request<'_>, claims: &crate::token::Claims) -> Outcome {
    if *req.method != http::Method::POST {
        return Outcome::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Resource Graph queries are sent with POST.",
        );
    }
    if let Err(e) = arm::check_api_version(
        &req.query,
        arm::RESOURCE_GRAPH_API_VERSIONS,
        Some("resources"),
        "global",
        &app.config.locations,
    ) {
        return e;
    }
    let faults = lock(&app.faults).config.clone();
    let quota = lock(&app.graph_quota).take(
        &claims.oid,
        faults.resource_graph_quota,
        Duration::from_millis(faults.resource_graph_window_ms),
        Instant::now(),
    );
    let outcome = if quota.allowed {
        let settings = lock(&app.settings).clone();
        match QueryRequest::parse(req.body, &settings) {
            Ok(request) => {
                let rows = visible_rows(app, claims, &request, &settings);
                answer_page(&request, rows)
            }
            Err(e) => e,
        }
    } else {
        let mut o = rg_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimiting",
            "RateLimiting",
            "Client application has been throttled and should not attempt to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help.",
        );
        o.headers.push((
            "Retry-After".into(),
            quota.resets_after.as_secs().max(1).to_string(),
        ));
        o
    };
    with_quota_headers(outcome, quota.remaining, quota.resets_after)
}

fn with_quota_headers(mut o: Outcome, remaining: u32, resets_after: Duration) -> Outcome {
    o.headers
        .push(("x-ms-user-quota-remaining".into(), remaining.to_string()));
    o.headers.push((
        "x-ms-user-quota-resets-after".into(),
        hh_mm_ss(resets_after),
    ));
    o
}

/// One query request: the parsed query, its paging and the subscriptions it names.
struct QueryRequest {
    text: String,
    query: Query,
    top: usize,
    offset: usize,
    subscriptions: Option<Vec<String>>,
}

fn bad_request(code: &str, message: &str) -> Outcome {
    rg_error(StatusCode::BAD_REQUEST, "BadRequest", code, message)
}

impl QueryRequest {
    fn parse(body: &[u8], settings: &crate::config::Settings) -> Result<Self, Outcome> {
        let body: Value = match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(bad_request(
                    "InvalidRequestContent",
                    "The request body must be a JSON object with `query`.",
                ));
            }
        };
        let Some(text) = body.get("query").and_then(Value::as_str).map(str::to_owned) else {
            return Err(bad_request(
                "InvalidRequestContent",
                "The request body must contain `query`.",
            ));
        };
        if body.get("managementGroups").is_some() {
            return Err(bad_request(
                "UnsupportedQuery",
                "managementGroups scopes are not supported by this emulator; list subscriptions.",
            ));
        }
        let query = parse(&text).map_err(|message| {
            bad_request(
                "InvalidQuery",
                &format!("Query is invalid: {message}. {SUPPORTED}"),
            )
        })?;
        let options = body.get("options").cloned().unwrap_or_else(|| json!({}));
        let (top, offset) = paging_options(&options, &text, settings)?;
        let subscriptions = body
            .get("subscriptions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            });
        Ok(Self {
            text,
            query,
            top,
            offset,
            subscriptions,
        })
    }
}

/// `options.resultFormat`, `$top`, `$skip` and `$skipToken`: the page size and start.
fn paging_options(
    options: &Value,
    text: &str,
    settings: &crate::config::Settings,
) -> Result<(usize, usize), Outcome> {
    if let Some(format) = options.get("resultFormat").and_then(Value::as_str)
        && !format.eq_ignore_ascii_case("objectArray")
    {
        return Err(bad_request(
            "UnsupportedQuery",
            "Only resultFormat objectArray is supported by this emulator.",
        ));
    }
    let top = match options.get("$top") {
        None | Some(Value::Null) => settings.resource_graph_default_top,
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(bad_request(
                    "InvalidRequestContent",
                    "options.$top must be between 1 and 1000.",
                ));
            }
        },
    };
    let mut offset = options
        .get("$skip")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    if let Some(token) = options.get("$skipToken").and_then(Value::as_str) {
        offset = read_skip_token(token, text).ok_or_else(|| {
            bad_request(
                "InvalidSkipToken",
                "The $skipToken is invalid or belongs to another query.",
            )
        })?;
    }
    Ok((top, offset))
}

/// The table's rows the caller may read, in the subscriptions it asked for, as of the freshness lag.
fn visible_rows(
    app: &App,
    claims: &crate::token::Claims,
    request: &QueryRequest,
    settings: &crate::config::Settings,
) -> Vec<Value> {
    let as_of = Instant::now().checked_sub(Duration::from_millis(settings.resource_graph_lag_ms));
    let store = lock(&app.store);
    let visible_subs: Vec<String> = store
        .subscriptions
        .values()
        .filter(|s| s.tenant_id.eq_ignore_ascii_case(&claims.tid))
        .filter(|s| {
            request
                .subscriptions
                .as_ref()
                .is_none_or(|r| r.contains(&s.id))
        })
        .map(|s| s.id.clone())
        .collect();
    let grants = store.grants_of(&claims.oid);
    let table = request.query.table;
    store
        .graph_rows(
            table,
            if settings.resource_graph_lag_ms == 0 {
                None
            } else {
                as_of
            },
        )
        .into_iter()
        .filter(|row| {
            let sub = str_at(row, &["subscriptionId"])
                .unwrap_or_default()
                .to_ascii_lowercase();
            visible_subs.contains(&sub) && row_readable(&store, &grants, table, row)
        })
        .collect()
}

fn row_readable(
    store: &crate::store::Store,
    grants: &[&crate::store::RoleAssignment],
    table: GraphTable,
    row: &Value,
) -> bool {
    match table {
        GraphTable::Resources => {
            let id = str_at(row, &["id"]).unwrap_or_default();
            let ty = if id
                .to_ascii_lowercase()
                .contains("/microsoft.containerservice/managedclusters/")
            {
                "Microsoft.ContainerService/managedClusters"
            } else {
                "Microsoft.ContainerRegistry/registries"
            };
            store.allowed_by(grants, &format!("{ty}/read"), id, None, None)
        }
        GraphTable::AuthorizationResources => {
            let scope = str_at(row, &["properties", "scope"]).unwrap_or_default();
            store.allowed_by(
                grants,
                "Microsoft.Authorization/roleAssignments/read",
                scope,
                None,
                None,
            )
        }
    }
}

/// Runs the query over the rows and answers one page, with a `$skipToken` when the rows have ids.
fn answer_page(request: &QueryRequest, rows: Vec<Value>) -> Outcome {
    let (rows, has_id) = run(&request.query, rows);
    let total = rows.len();
    let start = request.offset.min(total);
    let end = start.saturating_add(request.top).min(total);
    let data: Vec<Value> = rows[start..end].to_vec();
    let more = end < total;
    let mut answer = json!({
        "totalRecords": total,
        "count": data.len(),
        "resultTruncated": if more && !has_id { "true" } else { "false" },
        "facets": [],
        "data": data,
    });
    if more && has_id {
        answer["$skipToken"] = json!(skip_token(end, &request.text));
    }
    Outcome::json(StatusCode::OK, answer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HANDLER_QUERIES: [&str; 4] = [
        "resources | where type =~ 'microsoft.containerservice/managedclusters' | project id, name, type, location, tenantId, subscriptionId, resourceGroup, tags, properties | order by id asc",
        "resources | where type =~ 'microsoft.containerregistry/registries' | project id, name, type, location, tenantId, subscriptionId, resourceGroup, tags, properties | order by id asc",
        "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' | project id, name, properties | order by id asc",
        "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' and tolower(tostring(properties.principalId)) in ('aa', 'bb') | project id, name, properties | order by id asc",
    ];

    #[test]
    fn parses_every_handler_query() {
        for q in HANDLER_QUERIES {
            parse(q).unwrap();
        }
        let q = parse(HANDLER_QUERIES[3]).unwrap();
        assert_eq!(q.table, GraphTable::AuthorizationResources);
        assert!(matches!(&q.ops[0], Op::Where(c) if c.len() == 2));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for q in [
            "resources | summarize count() by type",
            "resources | where name contains 'x'",
            "resourcecontainers",
            "resources | where a == 'x' or b == 'y'",
            "resources | extend x = 1",
            "resources | where tags['a",
            &format!(
                "resources | where {}x{} == 'a'",
                "tolower(".repeat(10_000),
                ")".repeat(10_000)
            ),
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }

    #[test]
    fn evaluates_filters_projection_and_order() {
        let rows = vec![
            json!({"id": "/b", "name": "B", "type": "microsoft.authorization/roleassignments", "properties": {"principalId": "AA"}, "tags": {"team": "x"}}),
            json!({"id": "/a", "name": "A", "type": "microsoft.authorization/roleassignments", "properties": {"principalId": "cc"}}),
            json!({"id": "/c", "name": "C", "type": "Microsoft.Authorization/roleAssignments", "properties": {"principalId": "bb"}}),
        ];
        let (out, has_id) = run(&parse(HANDLER_QUERIES[3]).unwrap(), rows.clone());
        assert!(has_id);
        assert_eq!(
            out.iter()
                .map(|r| r["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["/b", "/c"]
        );
        assert_eq!(
            out[0].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["id", "name", "properties"]
        );
        let (out, _) = run(
            &parse("resources | where isnotempty(tags['team']) | project name").unwrap(),
            rows.clone(),
        );
        assert_eq!(out, vec![json!({"name": "B"})]);
        let (out, has_id) = run(
            &parse("resources | order by name | project name | limit 2").unwrap(),
            rows.clone(),
        );
        assert!(!has_id);
        assert_eq!(out, vec![json!({"name": "C"}), json!({"name": "B"})]);
        let (out, _) = run(
            &parse("resources | where type == 'microsoft.authorization/roleassignments'").unwrap(),
            rows,
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn skip_tokens_are_bound_to_their_query() {
        let t = skip_token(7, "q1");
        assert_eq!(read_skip_token(&t, "q1"), Some(7));
        assert_eq!(read_skip_token(&t, "q2"), None);
        assert_eq!(read_skip_token("garbage", "q1"), None);
    }
}
