//! Running a parsed query over the rows the caller may read, once per query: the result is a snapshot of the
//! matching rows in order — shared with the store, not copied — and the projection each page applies to the
//! rows it serves. Operators after a `project` see the projected columns: every column path is resolved through
//! the projections before it to a path of the stored row, so filters and sort keys read the stored row directly
//! and only the rows of a served page are ever projected.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{CmpOp, Cond, Expr, Op, Query};

/// An expression over the stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Resolved {
    Path(Vec<String>),
    Func(String, Box<Resolved>),
    /// A column no projection kept, or a path into a function's (string) value: always null.
    Null,
}

/// A query's result: the rows in order and how to project each one served.
pub(crate) struct GraphSnapshot {
    rows: Vec<Arc<Value>>,
    /// The last `project`'s columns over the stored row (`None`: rows are served whole).
    projection: Option<Vec<(String, Resolved)>>,
    /// Whether the projection keeps `id` (stable paging: a `$skipToken`).
    pub has_id: bool,
}

impl GraphSnapshot {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Rows `start..end` as served.
    pub fn page(&self, start: usize, end: usize) -> Vec<Value> {
        let end = end.min(self.rows.len());
        self.rows
            .get(start.min(end)..end)
            .unwrap_or_default()
            .iter()
            .map(|row| match &self.projection {
                None => Value::clone(row),
                Some(cols) => {
                    let mut out = Map::new();
                    for (name, expr) in cols {
                        out.insert(name.clone(), eval(expr, row));
                    }
                    Value::Object(out)
                }
            })
            .collect()
    }
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

/// The expression over the stored row that `expr` means after the projection `shape`.
fn resolve(shape: Option<&[(String, Resolved)]>, expr: &Expr) -> Resolved {
    match expr {
        Expr::Func(f, inner) => Resolved::Func(f.clone(), Box::new(resolve(shape, inner))),
        Expr::Path(path) => {
            let Some(cols) = shape else {
                return Resolved::Path(path.clone());
            };
            let Some((first, rest)) = path.split_first() else {
                return Resolved::Null;
            };
            // A repeated column name keeps its last value, as a JSON object built in order does.
            match cols.iter().rev().find(|(name, _)| name == first) {
                Some((_, column)) if rest.is_empty() => column.clone(),
                Some((_, Resolved::Path(base))) => {
                    Resolved::Path(base.iter().chain(rest).cloned().collect())
                }
                _ => Resolved::Null,
            }
        }
    }
}

fn eval(expr: &Resolved, row: &Value) -> Value {
    match expr {
        Resolved::Path(path) => lookup(row, path).cloned().unwrap_or(Value::Null),
        Resolved::Null => Value::Null,
        Resolved::Func(..) => Value::String(kql(expr, row)),
    }
}

/// The expression's value as KQL compares it: a string.
fn kql(expr: &Resolved, row: &Value) -> String {
    match expr {
        Resolved::Path(path) => to_kql_string(lookup(row, path)),
        Resolved::Null => String::new(),
        Resolved::Func(f, inner) => {
            let s = kql(inner, row);
            match f.as_str() {
                "tolower" => s.to_lowercase(),
                "toupper" => s.to_uppercase(),
                _ => s,
            }
        }
    }
}

fn holds(cond: &Cond, shape: Option<&[(String, Resolved)]>, row: &Value) -> bool {
    match cond {
        Cond::Cmp { lhs, op, rhs } => {
            let l = kql(&resolve(shape, lhs), row);
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
            let l = kql(&resolve(shape, lhs), row);
            let found = list.iter().any(|x| {
                if *case_insensitive {
                    x.to_lowercase() == l.to_lowercase()
                } else {
                    *x == l
                }
            });
            found != *negate
        }
        Cond::IsNotEmpty(e) => !kql(&resolve(shape, e), row).is_empty(),
        Cond::IsEmpty(e) => kql(&resolve(shape, e), row).is_empty(),
    }
}

/// Runs the query's operators over `rows` (already restricted to what the caller may see). `examined` grows by
/// every row an operator looks at.
pub(crate) fn snapshot(
    query: &Query,
    mut rows: Vec<Arc<Value>>,
    examined: &mut u64,
) -> GraphSnapshot {
    let mut shape: Option<Vec<(String, Resolved)>> = None;
    let mut has_id = true;
    for op in &query.ops {
        match op {
            Op::Where(conds) => {
                *examined += rows.len() as u64;
                rows.retain(|r| conds.iter().all(|c| holds(c, shape.as_deref(), r)));
            }
            Op::Project(cols) => {
                has_id = cols.iter().any(|(name, _)| name == "id");
                let projected = cols
                    .iter()
                    .map(|(name, expr)| (name.clone(), resolve(shape.as_deref(), expr)))
                    .collect();
                shape = Some(projected);
            }
            Op::Order(keys) => {
                *examined += rows.len() as u64;
                let keys: Vec<(Resolved, bool)> = keys
                    .iter()
                    .map(|(col, asc)| {
                        (
                            resolve(shape.as_deref(), &Expr::Path(vec![col.clone()])),
                            *asc,
                        )
                    })
                    .collect();
                let mut keyed: Vec<(Vec<String>, Arc<Value>)> = rows
                    .into_iter()
                    .map(|r| (keys.iter().map(|(k, _)| kql(k, &r)).collect(), r))
                    .collect();
                // Stable, as before: equal keys keep their order.
                keyed.sort_by(|(a, _), (b, _)| {
                    for ((x, y), (_, asc)) in a.iter().zip(b).zip(&keys) {
                        let ord = x.cmp(y);
                        if ord != Ordering::Equal {
                            return if *asc { ord } else { ord.reverse() };
                        }
                    }
                    Ordering::Equal
                });
                rows = keyed.into_iter().map(|(_, r)| r).collect();
            }
            Op::Limit(n) => rows.truncate(*n),
        }
    }
    GraphSnapshot {
        rows,
        projection: shape,
        has_id,
    }
}

/// The whole result of `query` over `rows`, and whether it projects `id`.
pub fn run(query: &Query, rows: Vec<Value>) -> (Vec<Value>, bool) {
    let snapshot = snapshot(query, rows.into_iter().map(Arc::new).collect(), &mut 0);
    (snapshot.page(0, snapshot.len()), snapshot.has_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::super::parse;
    use super::*;

    #[test]
    fn operators_after_a_projection_see_its_columns() {
        let rows = vec![
            json!({"id": "/b", "name": "B", "properties": {"principalId": "X", "n": {"deep": "2"}}}),
            json!({"id": "/a", "name": "A", "properties": {"principalId": "y", "n": {"deep": "1"}}}),
        ];
        // Sort by a projected column; filter through a projected object; a function column is a string.
        let q = parse(
            "resources | project id, properties | where properties.principalId =~ 'x' | order by id asc",
        )
        .unwrap();
        let (out, has_id) = run(&q, rows.clone());
        assert!(has_id);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["id"], "/b");
        let (out, _) = run(
            &parse("resources | project properties | project n | order by n asc").unwrap(),
            rows.clone(),
        );
        // `n` is not a column of the first projection: null for every row.
        assert_eq!(out, vec![json!({"n": null}), json!({"n": null})]);
        let (out, has_id) = run(
            &parse("resources | project name, properties | order by name asc | where isnotempty(properties.n.deep) | project name").unwrap(),
            rows,
        );
        assert!(!has_id);
        assert_eq!(out, vec![json!({"name": "A"}), json!({"name": "B"})]);
    }
}
