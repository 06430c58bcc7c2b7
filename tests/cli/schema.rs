//! The checked-in JSON Schema must equal the one generated from the config types.

#[test]
fn checked_in_schema_matches_the_types() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/cairn-stack.schema.json");
    let checked_in =
        std::fs::read_to_string(&path).expect("schemas/cairn-stack.schema.json exists");
    let generated = cairn::config::raw::json_schema();
    assert!(
        checked_in == generated,
        "schemas/cairn-stack.schema.json is out of date with the config types; regenerate it with:\n  cargo run -- schema > schemas/cairn-stack.schema.json"
    );
}
