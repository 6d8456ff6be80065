//! Resource Graph: a small, honest subset of KQL over the `resources` and `authorizationresources` tables,
//! with `$skipToken` paging, the per-user quota and a freshness lag. A query outside the subset is answered
//! with 400 and the list of what is supported, never with a silently wrong result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use crate::app::{App, lock, str_at};
use crate::arm::{self, Outcome, Request};
use crate::cursors::{self, AnySnapshot};
use crate::limits::hh_mm_ss;
use crate::stats::PageWork;
use crate::store::{GraphTable, rfc3339};

mod eval;

use eval::GraphSnapshot;
pub use eval::run;

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
            Ok(request) => answer_page(app, claims, &request, &settings),
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

/// A later page: (cursor id, offset).
type Position = (u64, usize);

/// One query request: the parsed query, its paging and the subscriptions it names.
struct QueryRequest {
    text: String,
    query: Query,
    top: usize,
    /// `$skip`: where a first page starts.
    offset: usize,
    /// `$skipToken`: the cursor and offset of a later page.
    resume: Option<Position>,
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
        let (top, offset, resume) = paging_options(&options, settings)?;
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
            resume,
            subscriptions,
        })
    }
}

/// `options.resultFormat`, `$top`, `$skip` and `$skipToken`: the page size, the start of a first page and the
/// position of a later one.
fn paging_options(
    options: &Value,
    settings: &crate::config::Settings,
) -> Result<(usize, usize, Option<Position>), Outcome> {
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
    let offset = options
        .get("$skip")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let resume = match options.get("$skipToken").and_then(Value::as_str) {
        None => None,
        Some(token) => Some(cursors::read_token(token).ok_or_else(invalid_skip_token)?),
    };
    Ok((top, offset, resume))
}

/// A `$skipToken` that names no live cursor of this caller's query (see `cursors.rs`: Azure documents no error
/// for an expired token; this is the emulator's choice).
fn invalid_skip_token() -> Outcome {
    bad_request(
        "InvalidSkipToken",
        "The $skipToken is invalid, has expired, or belongs to another query.",
    )
}

/// The table's rows the caller may read, in the subscriptions it asked for, as of the freshness lag (shared
/// with the store). Read rights come from the caller's grants, computed once. `examined` grows by the grants and
/// the table's rows looked at.
fn visible_rows(
    app: &App,
    claims: &crate::token::Claims,
    request: &QueryRequest,
    settings: &crate::config::Settings,
    examined: &mut u64,
) -> Vec<Arc<Value>> {
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
    let (rows, read) = store.graph_rows(
        table,
        if settings.resource_graph_lag_ms == 0 {
            None
        } else {
            as_of
        },
    );
    *examined += read + grants.len() as u64;
    // Many rows share a scope (every assignment at one registry): the caller's right to read it is the same.
    let mut readable_scopes: HashMap<String, bool> = HashMap::new();
    rows.into_iter()
        .filter(|row| {
            let sub = str_at(row, &["subscriptionId"]).unwrap_or_default();
            visible_subs.iter().any(|v| v.eq_ignore_ascii_case(sub))
                && row_readable(&store, &grants, table, row, &mut readable_scopes)
        })
        .collect()
}

fn row_readable(
    store: &crate::store::Store,
    grants: &[&crate::store::RoleAssignment],
    table: GraphTable,
    row: &Value,
    readable_scopes: &mut HashMap<String, bool>,
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
            if let Some(known) = readable_scopes.get(scope) {
                return *known;
            }
            let readable = store.allowed_by(
                grants,
                "Microsoft.Authorization/roleAssignments/read",
                scope,
                None,
                None,
            );
            readable_scopes.insert(scope.to_owned(), readable);
            readable
        }
    }
}

const OPERATION: &str = "resource_graph";

/// Answers one page, with a `$skipToken` when more rows remain and they have ids. A first page runs the query
/// once into a snapshot; a `$skipToken` names that snapshot (`cursors.rs`), so a later page costs its own rows.
fn answer_page(
    app: &App,
    claims: &crate::token::Claims,
    request: &QueryRequest,
    settings: &crate::config::Settings,
) -> Outcome {
    let subscriptions = request
        .subscriptions
        .as_ref()
        .map_or_else(|| "*".to_owned(), |s| s.join(","));
    let binding = cursors::binding(&[
        OPERATION,
        &claims.oid.to_ascii_lowercase(),
        &subscriptions,
        &request.text,
    ]);
    let mut work = PageWork {
        operation: OPERATION.into(),
        examined: 0,
        served: 0,
        opened_snapshot: request.resume.is_none(),
    };
    let now = Instant::now();
    let (result, start, cursor) = if let Some((id, offset)) = request.resume {
        let kept = lock(&app.graph_cursors)
            .resume(id, &binding, now)
            .and_then(|s| s.downcast::<GraphSnapshot>().ok());
        match kept {
            Some(result) => (result, offset, Some(id)),
            None => return invalid_skip_token(),
        }
    } else {
        let rows = visible_rows(app, claims, request, settings, &mut work.examined);
        let result = eval::snapshot(&request.query, rows, &mut work.examined);
        (Arc::new(result), request.offset, None)
    };
    let total = result.len();
    let start = start.min(total);
    let end = start.saturating_add(request.top).min(total);
    let data = result.page(start, end);
    work.served = data.len() as u64;
    let more = end < total;
    let mut answer = json!({
        "totalRecords": total,
        "count": data.len(),
        "resultTruncated": if more && !result.has_id { "true" } else { "false" },
        "facets": [],
        "data": data,
    });
    if more && result.has_id {
        let id = cursor.unwrap_or_else(|| {
            let snapshot: Arc<AnySnapshot> = result.clone();
            lock(&app.graph_cursors).open(snapshot, binding, now)
        });
        answer["$skipToken"] = json!(cursors::token(id, end));
    }
    lock(&app.stats).record_page(work);
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
}
