//! The DynamoDB tables: keys, indexes and TTL, as code. `create_tables` builds them for
//! DynamoDB Local and tests; `template.yaml` declares the same for AWS, and
//! `scripts/check_template_schema.py` (run by `scripts/test`) checks that the two agree.
//!
//! Every table has a string partition key `pk` and generic keys-only indexes `gsi1`
//! (`gsi1pk`, `gsi1sk`), `gsi2`, `gsi3` as needed. Item types per table:
//!
//! | table | item | pk | gsi1 | gsi2 |
//! |---|---|---|---|---|
//! | customers | customer | `CUSTOMER#<id>` | `CUSTOMER` / id | – |
//! | customers | login (unique email or username, password hash) | `LOGIN#<lower login>` | – | – |
//! | customers | admin | `ADMIN#<id>` | – | – |
//! | customers | revoked token (TTL) | `REVOKED#<jti>` | – | – |
//! | customers | an account's ended sessions (TTL) | `SESSIONS_ENDED#<account id>` | – | – |
//! | customers | failed-login counter (TTL) | `ATTEMPTS#<kind>:<key>#<window end>` | – | – |
//! | products | product | `PRODUCT#<id>` | `PRODUCT` / lower name | `IN_CATEGORY#<slug>` / lower name |
//! | products | name guard | `PRODUCT_NAME#<lower name>` | – | – |
//! | products | category count | `CATEGORY#<slug>` | `CATEGORY` / slug | – |
//! | customers | order cooldown (TTL) | `COOLDOWN#<customer id>` | – | – |
//! | orders | order | `ORDER#<id>` | `CUSTOMER#<id>` / order id | `STATUS#<status>` / due time, id; gsi3: `ORDER` / order id |
//! | orders | idempotency record (TTL) | `IDEMPOTENCY#<customer id>#<key>` | – | – |
//! | orders | metrics counter shard | `METRICS#<n>` | – | – |
//! | orders | payment | `PAYMENT#<id>` | `ORDER_PAYMENTS#<order id>` / id | gsi3: `PAYMENT` / id |
//! | orders | refund awaiting the gateway (outbox) | `REFUND#<payment id>` | – | `REFUNDS_PENDING` / payment id |
//!
//! Indexes are KEYS_ONLY: a stock or price change writes no index item (no hot index
//! partition under order load); lists read keys from the index and items from the table.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::TableNames;
use crate::store::StoreError;

/// The attribute holding an item's expiry (epoch seconds) for DynamoDB TTL. TTL only
/// collects garbage: every read compares the item's own `expires_at` to now.
pub const TTL_ATTRIBUTE: &str = "ttl";

/// One table as the code needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub sort_key: bool,
    pub indexes: Vec<&'static str>,
    pub ttl: bool,
}

/// The project's tables, by role.
pub fn table_specs(names: &TableNames) -> Vec<TableSpec> {
    vec![
        TableSpec { name: names.customers.clone(), sort_key: false, indexes: vec!["gsi1"], ttl: true },
        TableSpec { name: names.products.clone(), sort_key: false, indexes: vec!["gsi1", "gsi2"], ttl: false },
        TableSpec { name: names.orders.clone(), sort_key: false, indexes: vec!["gsi1", "gsi2", "gsi3"], ttl: true },
    ]
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("building request: {e}"))
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(build_err)
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_err)
}

/// Creates every table that does not exist yet (on-demand billing, TTL where items expire).
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<(), StoreError> {
    for spec in table_specs(names) {
        let mut attributes = vec![string_attribute("pk")?];
        let mut key_schema = vec![key("pk", KeyType::Hash)?];
        if spec.sort_key {
            attributes.push(string_attribute("sk")?);
            key_schema.push(key("sk", KeyType::Range)?);
        }
        let mut request = client
            .create_table()
            .table_name(&spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema));
        for index in &spec.indexes {
            let (hash, range) = (format!("{index}pk"), format!("{index}sk"));
            attributes.push(string_attribute(&hash)?);
            attributes.push(string_attribute(&range)?);
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(*index)
                    .key_schema(key(&hash, KeyType::Hash)?)
                    .key_schema(key(&range, KeyType::Range)?)
                    .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                    .build()
                    .map_err(build_err)?,
            );
        }
        match request.set_attribute_definitions(Some(attributes)).send().await {
            Ok(_) => {}
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => continue,
            Err(err) => return Err(super::sdk_error("CreateTable", err)),
        }
        if spec.ttl {
            client
                .update_time_to_live()
                .table_name(&spec.name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(TTL_ATTRIBUTE)
                        .build()
                        .map_err(build_err)?,
                )
                .send()
                .await
                .map_err(|e| super::sdk_error("UpdateTimeToLive", e))?;
        }
    }
    Ok(())
}
