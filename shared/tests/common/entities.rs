//! Entities built directly (not through the domain service) and a pager, for the store suites.

use orderly::model::{Category, Customer, Email, PersonName, Product, ProductName};
use orderly::store::{Page, PageRequest, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

/// Now, to the second: what every store round-trips exactly.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).expect("valid")
}

pub fn customer(email: &str) -> Customer {
    Customer {
        id: Uuid::now_v7(),
        name: PersonName::parse("name", "Ada Lovelace").expect("valid"),
        email: Email::parse("email", email).expect("valid"),
        phone: None,
        address: None,
        version: 1,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn product(name: &str, category: &str, price_cents: i64, stock: i64) -> Product {
    Product {
        id: Uuid::now_v7(),
        name: ProductName::parse("name", name).expect("valid"),
        description: format!("{name} description"),
        price_cents,
        stock,
        category: Category::parse("category", category).expect("valid"),
        // No low-stock line for store tests to cross unless one draws it.
        low_stock_threshold: 0,
        stock_shards: 1,
        version: 1,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn next_version<T: Clone>(item: &T, bump: impl FnOnce(&mut T)) -> T {
    let mut next = item.clone();
    bump(&mut next);
    next
}

/// Every page of a list, checking each page respects the limit.
pub async fn all_pages<T, F, Fut>(limit: u32, mut fetch: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut items = Vec::new();
    let mut page = PageRequest::first(limit);
    for _ in 0..1000 {
        let result = fetch(page.clone()).await.expect("list");
        assert!(result.items.len() <= limit as usize, "page larger than the limit");
        items.extend(result.items);
        match result.next_token {
            Some(token) => page.token = Some(token),
            None => return items,
        }
    }
    panic!("pagination did not end");
}
