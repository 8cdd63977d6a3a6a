//! Exchanges: named routing objects that send each message published to
//! them to the topics bound to them, by routing key or by headers, as AMQP
//! 0-9-1's exchanges do (ARCHITECTURE.md, "Exchanges"). Routing is decided
//! here and nowhere else; the state only appends where this says.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checks::{check_limit, check_name};
use super::limits::{
    BINDINGS_PER_EXCHANGE_MAX, BINDING_ARGUMENTS_MAX, EXCHANGES_MAX, ROUTING_KEY_BYTES_MAX,
};
use super::quirks::{self, Quirk};
use super::rejection::Rejection;

/// The name of the default exchange: it routes a message to the topic its
/// routing key names, and cannot be declared, bound or deleted.
pub const DEFAULT_EXCHANGE: &str = "";

/// The binding argument naming how a headers exchange matches.
pub const X_MATCH: &str = "x-match";

/// How an exchange matches a message against a binding.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeKind {
    /// The routing key equals the binding's key.
    Direct,
    /// The routing key matches the binding's pattern: `.`-separated words,
    /// `*` one word, `#` zero or more (`topic_matches`).
    Topic,
    /// Every binding, whatever the routing key.
    Fanout,
    /// The message's headers match the binding's arguments (`x-match`).
    Headers,
}

impl ExchangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// A topic bound to an exchange. Binding the same twice changes nothing;
/// one topic may be bound to one exchange several ways, and gets a message
/// once however many of them match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    pub topic: String,
    /// The routing key (direct) or pattern (topic); the other kinds ignore
    /// it.
    pub key: String,
    /// For a headers exchange: the headers to compare and `x-match` (`all`,
    /// the default, `any`, `all-with-x` or `any-with-x`). The other kinds
    /// ignore them.
    pub arguments: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub kind: ExchangeKind,
    /// Where a message this exchange routes nowhere goes instead (AMQP's
    /// `alternate-exchange`).
    pub alternate: Option<String>,
    pub bindings: BTreeSet<Binding>,
    /// Messages that were published here and went to no topic at all,
    /// alternates included: returned to a `mandatory` publisher or dropped.
    pub unroutable: u64,
}

impl Exchange {
    pub fn new(kind: ExchangeKind, alternate: Option<String>) -> Exchange {
        Exchange {
            kind,
            alternate,
            bindings: BTreeSet::new(),
            unroutable: 0,
        }
    }

    /// The topics this exchange's own bindings send a message to (a topic
    /// may come more than once).
    fn matching<'a>(
        &'a self,
        routing_key: &'a str,
        headers: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.bindings
            .iter()
            .filter(move |binding| match self.kind {
                ExchangeKind::Direct => binding.key == routing_key,
                ExchangeKind::Topic => topic_matches(&binding.key, routing_key),
                ExchangeKind::Fanout => true,
                ExchangeKind::Headers => headers_match(&binding.arguments, headers),
            })
            .map(|binding| binding.topic.as_str())
    }
}

/// A routing key or binding key: at most `ROUTING_KEY_BYTES_MAX` bytes.
pub fn check_routing_key(key: &str) -> Result<(), Rejection> {
    if key.len() > ROUTING_KEY_BYTES_MAX {
        return Err(Rejection::Invalid(format!(
            "a routing key of {} bytes; the limit is {ROUTING_KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a binding for `kind` before it is stored: its key and arguments
/// within their bounds, and a headers binding's `x-match` one this
/// exchange knows.
fn check_binding(kind: ExchangeKind, binding: &Binding) -> Result<(), Rejection> {
    check_routing_key(&binding.key)?;
    if binding.arguments.len() > BINDING_ARGUMENTS_MAX {
        return Err(Rejection::Invalid(format!(
            "{} binding arguments; the limit is {BINDING_ARGUMENTS_MAX}",
            binding.arguments.len()
        )));
    }
    if let Some((name, _)) = binding.arguments.iter().find(|(name, value)| {
        name.len() > ROUTING_KEY_BYTES_MAX || value.len() > ROUTING_KEY_BYTES_MAX
    }) {
        return Err(Rejection::Invalid(format!(
            "binding argument {name:?} or its value is over {ROUTING_KEY_BYTES_MAX} bytes"
        )));
    }
    if kind != ExchangeKind::Headers {
        return Ok(());
    }
    match binding.arguments.get(X_MATCH).map(String::as_str) {
        None | Some("all" | "any" | "all-with-x" | "any-with-x") => Ok(()),
        Some(other) => Err(Rejection::Invalid(format!(
            "{X_MATCH} {other:?}: use all, any, all-with-x or any-with-x"
        ))),
    }
}

/// Every declared exchange, by name. The default exchange is not among
/// them: it has no state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Exchanges(BTreeMap<String, Exchange>);

/// What `ListExchanges` shows of an exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeSummary {
    pub name: String,
    pub kind: ExchangeKind,
    pub alternate: Option<String>,
    pub bindings: Vec<Binding>,
    pub unroutable: u64,
}

impl Exchanges {
    /// Declares an exchange: creates it, or, if it exists with the same
    /// kind and alternate, changes nothing and says so (`Ok(false)`).
    pub fn declare(
        &mut self,
        name: &str,
        kind: ExchangeKind,
        alternate: Option<&str>,
        fail_if_exists: bool,
    ) -> Result<bool, Rejection> {
        check_exchange_name(name)?;
        if let Some(alternate) = alternate {
            check_exchange_name(alternate)?;
        }
        let Some(existing) = self.0.get(name) else {
            check_limit("exchanges", self.0.len(), EXCHANGES_MAX)?;
            let exchange = Exchange::new(kind, alternate.map(str::to_string));
            self.0.insert(name.to_string(), exchange);
            return Ok(true);
        };
        if fail_if_exists {
            return Err(Rejection::ExchangeExists(name.into()));
        }
        let none = || "none".to_string();
        let settings = [
            (
                "kind",
                existing.kind.name().to_string(),
                kind.name().to_string(),
            ),
            (
                "alternate_exchange",
                existing.alternate.clone().unwrap_or_else(none),
                alternate.map_or_else(none, str::to_string),
            ),
        ];
        match settings.into_iter().find(|(_, had, asked)| had != asked) {
            Some((setting, existing, asked)) => Err(Rejection::SettingMismatch {
                what: "exchange".into(),
                name: name.into(),
                setting: setting.into(),
                existing,
                asked,
            }),
            None => Ok(false),
        }
    }

    /// Deletes an exchange and its bindings; `if_unused`: only if it has
    /// none. An exchange naming it as its alternate keeps the name, and
    /// routes nowhere through it until one is declared again.
    pub fn delete(&mut self, name: &str, if_unused: bool) -> Result<(), Rejection> {
        let exchange = self.get(name)?;
        if if_unused && !exchange.bindings.is_empty() {
            return Err(Rejection::ExchangeInUse {
                exchange: name.into(),
                bindings: exchange.bindings.len(),
            });
        }
        self.0.remove(name);
        Ok(())
    }

    /// Binds a topic (which must exist) to an exchange; binding it the
    /// same way again changes nothing.
    pub fn bind(&mut self, exchange: &str, binding: Binding) -> Result<(), Rejection> {
        let found = self.get_mut(exchange)?;
        check_binding(found.kind, &binding)?;
        if !found.bindings.contains(&binding) {
            let count = found.bindings.len();
            check_limit("bindings per exchange", count, BINDINGS_PER_EXCHANGE_MAX)?;
        }
        found.bindings.insert(binding);
        Ok(())
    }

    /// Removes a binding; removing one that is not there changes nothing.
    pub fn unbind(&mut self, exchange: &str, binding: &Binding) -> Result<(), Rejection> {
        self.get_mut(exchange)?.bindings.remove(binding);
        Ok(())
    }

    /// Removes every binding to a topic that is being deleted.
    pub fn unbind_topic(&mut self, topic: &str) {
        for exchange in self.0.values_mut() {
            exchange.bindings.retain(|binding| binding.topic != topic);
        }
    }

    /// Counts `count` messages that went nowhere from `exchange`.
    pub fn count_unroutable(&mut self, exchange: &str, count: u64) {
        if let Some(exchange) = self.0.get_mut(exchange) {
            exchange.unroutable += count;
        }
    }

    /// Whether `exchange` can take a publish: the default one, or one
    /// declared.
    pub fn check_exists(&self, exchange: &str) -> Result<(), Rejection> {
        if exchange == DEFAULT_EXCHANGE {
            return Ok(());
        }
        self.get(exchange).map(|_| ())
    }

    /// Where a message published to `exchange` with `routing_key` and
    /// `headers` goes: each topic once, in name order; empty when it is
    /// unroutable. An exchange that routes it nowhere hands it to its
    /// alternate, and that to its own, each at most once.
    pub fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: &BTreeMap<String, String>,
        topic_exists: impl Fn(&str) -> bool,
    ) -> BTreeSet<String> {
        if exchange == DEFAULT_EXCHANGE {
            return BTreeSet::from_iter(topic_exists(routing_key).then(|| routing_key.to_string()));
        }
        let mut tried = BTreeSet::new();
        let mut next = self.0.get_key_value(exchange);
        while let Some((name, current)) = next {
            if !tried.insert(name) {
                break; // alternates in a circle
            }
            let first_only = quirks::on(Quirk::RouteFirstOnly);
            let topics: BTreeSet<String> = current
                .matching(routing_key, headers)
                .filter(|topic| topic_exists(topic))
                .map(str::to_string)
                .take(if first_only { 1 } else { usize::MAX })
                .collect();
            if !topics.is_empty() {
                return topics;
            }
            next = current
                .alternate
                .as_deref()
                .and_then(|alternate| self.0.get_key_value(alternate));
        }
        BTreeSet::new()
    }

    pub fn summaries(&self) -> Vec<ExchangeSummary> {
        self.0
            .iter()
            .map(|(name, exchange)| ExchangeSummary {
                name: name.clone(),
                kind: exchange.kind,
                alternate: exchange.alternate.clone(),
                bindings: exchange.bindings.iter().cloned().collect(),
                unroutable: exchange.unroutable,
            })
            .collect()
    }

    fn get(&self, name: &str) -> Result<&Exchange, Rejection> {
        self.0
            .get(name)
            .ok_or_else(|| Rejection::UnknownExchange(name.into()))
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut Exchange, Rejection> {
        self.0
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownExchange(name.into()))
    }
}

/// An exchange's name follows a topic's rules; the default exchange's
/// (empty) cannot be declared, bound or deleted.
fn check_exchange_name(name: &str) -> Result<(), Rejection> {
    if name == DEFAULT_EXCHANGE {
        return Err(Rejection::Invalid(
            "the default exchange (\"\") cannot be declared, bound or deleted".into(),
        ));
    }
    check_name("exchange", name)
}

/// Whether a routing key matches a topic exchange's pattern. Both are
/// words separated by `.` (the empty string is no word at all, as in
/// RabbitMQ; `a..b` has an empty word in the middle); in the pattern `*`
/// stands for exactly one word and `#` for zero or more.
///
/// Dynamic programming over (pattern word, key word), so that a pattern of
/// many `#` costs its length times the key's, never more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let pattern = words(pattern);
    let key = words(key);
    // reach[j]: the pattern words so far can match the first j key words.
    let mut reach = vec![false; key.len() + 1];
    reach[0] = true;
    for word in pattern {
        let mut next = vec![false; key.len() + 1];
        for j in 0..=key.len() {
            next[j] = match word {
                // Zero words, or one more than `#` took already.
                "#" => reach[j] || (j > 0 && next[j - 1]),
                "*" => j > 0 && reach[j - 1],
                _ => j > 0 && reach[j - 1] && key[j - 1] == word,
            };
        }
        reach = next;
    }
    reach[key.len()]
}

fn words(text: &str) -> Vec<&str> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split('.').collect()
    }
}

/// Whether a message's headers match a headers binding's arguments:
/// `x-match` `all` (the default) wants every argument equal to the
/// message's header of that name, `any` at least one. Arguments whose name
/// starts `x-` are compared only by the `-with-x` variants.
fn headers_match(arguments: &BTreeMap<String, String>, headers: &BTreeMap<String, String>) -> bool {
    let how = arguments.get(X_MATCH).map_or("all", String::as_str);
    let with_x = how.ends_with("-with-x");
    let mut compared = arguments
        .iter()
        .filter(|(name, _)| name.as_str() != X_MATCH && (with_x || !name.starts_with("x-")))
        .map(|(name, value)| headers.get(name) == Some(value));
    if how.starts_with("any") {
        compared.any(|equal| equal)
    } else {
        compared.all(|equal| equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_topic(pattern: &str, key: &str, expected: bool) {
        assert_eq!(
            topic_matches(pattern, key),
            expected,
            "pattern {pattern:?} against key {key:?}"
        );
    }

    #[test]
    fn topic_patterns_match_words_stars_and_hashes() {
        for (pattern, key, expected) in [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.b", "a.b.c", false),
            ("*.b", "a.b", true),
            ("*.b", "b", false),
            ("*", "", false),
            ("*", "a", true),
            ("*", "a.b", false),
            // `#` alone matches every key, the empty one too.
            ("#", "", true),
            ("#", "a", true),
            ("#", "a.b.c", true),
            // `#` in the middle takes zero words or several.
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("a.#.b", "a.x.y", false),
            ("a.#", "a", true),
            ("#.a", "a", true),
            ("#.a", "b.a.c", false),
            ("#.*", "", false),
            ("#.*", "a", true),
            ("#.#", "", true),
            // Empty words are words: `a..b` has three.
            ("a.*.b", "a..b", true),
            ("a..b", "a..b", true),
            ("a.b", "a..b", false),
            ("*", ".", false),
            ("*.*", ".", true),
            ("", "", true),
            ("", "a", false),
            // A word is compared whole, so `*` and `#` only stand alone.
            ("a*", "ab", false),
            ("a#", "a", false),
        ] {
            check_topic(pattern, key, expected);
        }
    }

    #[test]
    fn many_hashes_cost_no_more_than_their_length() {
        let pattern = vec!["#"; 100].join(".") + ".z";
        let key = vec!["a"; 100].join(".");
        check_topic(&pattern, &key, false);
        check_topic(&pattern, &(key + ".z"), true);
    }

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn headers_match_all_any_and_the_x_variants() {
        let message = headers(&[("format", "pdf"), ("type", "report"), ("x-tag", "1")]);
        for (arguments, expected) in [
            (vec![("format", "pdf"), ("type", "report")], true),
            (vec![("format", "pdf"), ("type", "log")], false),
            (
                vec![("x-match", "any"), ("format", "pdf"), ("type", "log")],
                true,
            ),
            (
                vec![("x-match", "any"), ("format", "zip"), ("type", "log")],
                false,
            ),
            (vec![("format", "pdf"), ("missing", "v")], false),
            // Without `-with-x`, `x-` arguments are not compared.
            (vec![("format", "pdf"), ("x-tag", "2")], true),
            (
                vec![("x-match", "all-with-x"), ("format", "pdf"), ("x-tag", "2")],
                false,
            ),
            (vec![("x-match", "all-with-x"), ("x-tag", "1")], true),
            (vec![("x-match", "any-with-x"), ("x-tag", "1")], true),
            (vec![("x-match", "any"), ("x-tag", "1")], false),
            // Nothing to compare: all holds, any does not.
            (vec![], true),
            (vec![("x-match", "any")], false),
        ] {
            assert_eq!(
                headers_match(&headers(&arguments), &message),
                expected,
                "arguments {arguments:?}"
            );
        }
    }

    /// Every cap on exchanges is crossed: the exchange past the most
    /// refused, as the binding past the most on one exchange (binding one
    /// that is there already still succeeds), and a binding with too many
    /// arguments.
    #[test]
    fn exchanges_bindings_and_arguments_are_capped() {
        let mut exchanges = Exchanges::default();
        for n in 0..EXCHANGES_MAX {
            exchanges
                .declare(&format!("x{n}"), ExchangeKind::Fanout, None, false)
                .expect("under the cap");
        }
        let past = exchanges.declare("one-more", ExchangeKind::Fanout, None, false);
        assert!(
            matches!(past, Err(Rejection::LimitReached { .. })),
            "{past:?}"
        );
        let binding = |n: usize| Binding {
            topic: format!("t{n}"),
            key: String::new(),
            arguments: BTreeMap::new(),
        };
        for n in 0..BINDINGS_PER_EXCHANGE_MAX {
            exchanges.bind("x0", binding(n)).expect("under the cap");
        }
        let past = exchanges.bind("x0", binding(BINDINGS_PER_EXCHANGE_MAX));
        assert!(
            matches!(past, Err(Rejection::LimitReached { .. })),
            "{past:?}"
        );
        assert_eq!(exchanges.bind("x0", binding(0)), Ok(()), "already bound");
        let crowded = Binding {
            arguments: (0..=BINDING_ARGUMENTS_MAX)
                .map(|n| (format!("h{n}"), "v".to_string()))
                .collect(),
            ..binding(0)
        };
        assert!(matches!(
            exchanges.bind("x1", crowded),
            Err(Rejection::Invalid(_))
        ));
    }

    fn exchange(
        kind: ExchangeKind,
        alternate: Option<&str>,
        bindings: &[(&str, &str)],
    ) -> Exchange {
        let mut exchange = Exchange::new(kind, alternate.map(str::to_string));
        for (topic, key) in bindings {
            exchange.bindings.insert(Binding {
                topic: topic.to_string(),
                key: key.to_string(),
                arguments: BTreeMap::new(),
            });
        }
        exchange
    }

    fn check_route(exchanges: &Exchanges, name: &str, key: &str, expected: &[&str]) {
        let routed = exchanges.route(name, key, &BTreeMap::new(), |topic| topic != "gone");
        let expected: BTreeSet<String> = expected.iter().map(|t| t.to_string()).collect();
        assert_eq!(routed, expected, "exchange {name:?}, routing key {key:?}");
    }

    #[test]
    fn routing_goes_to_each_matching_topic_once_then_to_the_alternate() {
        let exchanges = Exchanges(BTreeMap::from([
            (
                "logs".to_string(),
                exchange(
                    ExchangeKind::Direct,
                    Some("spare"),
                    &[
                        ("errors", "error"),
                        ("all", "error"),
                        ("all", "info"),
                        ("gone", "warn"),
                    ],
                ),
            ),
            (
                "fan".to_string(),
                exchange(ExchangeKind::Fanout, None, &[("a", "x"), ("b", "")]),
            ),
            (
                "spare".to_string(),
                exchange(ExchangeKind::Fanout, Some("logs"), &[("unrouted", "")]),
            ),
            (
                "loop1".to_string(),
                exchange(ExchangeKind::Direct, Some("loop2"), &[]),
            ),
            (
                "loop2".to_string(),
                exchange(ExchangeKind::Direct, Some("loop1"), &[]),
            ),
        ]));
        check_route(&exchanges, "logs", "error", &["all", "errors"]);
        check_route(&exchanges, "logs", "info", &["all"]);
        // Bound only to a topic that is gone: the alternate takes it.
        check_route(&exchanges, "logs", "warn", &["unrouted"]);
        check_route(&exchanges, "logs", "debug", &["unrouted"]);
        check_route(&exchanges, "fan", "anything", &["a", "b"]);
        check_route(&exchanges, "loop1", "k", &[]);
        check_route(&exchanges, "missing", "k", &[]);
        // The default exchange: the topic the key names, if it exists.
        check_route(&exchanges, "", "jobs", &["jobs"]);
        check_route(&exchanges, "", "gone", &[]);
    }
}
