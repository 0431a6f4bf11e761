//! Parsing of the closed sets of names the policy, the store and the API share (actions,
//! detection kinds, flag states, action decisions): one lookup and one error wording.

/// The member of `all` whose name is `text`, or an error naming `what` and listing every
/// name, e.g. "unknown action `kill`; expected one of: observe, flag, ...".
pub fn parse<T: Copy>(
    all: &[T],
    name: impl Fn(T) -> &'static str,
    what: &str,
    text: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|t| name(*t) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|t| name(*t)).collect();
            format!(
                "unknown {what} `{text}`; expected one of: {}",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_list_every_choice() {
        let all = [1u8, 2, 3];
        let name = |n: u8| ["", "one", "two", "three"][usize::from(n)];
        assert_eq!(parse(&all, name, "number", "two"), Ok(2));
        assert_eq!(
            parse(&all, name, "number", "four"),
            Err("unknown number `four`; expected one of: one, two, three".to_owned())
        );
    }
}
