//! The store conformance suite: every test runs unchanged against SQLite and DynamoDB Local.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::entities::{all_pages, customer, next_version, now, product};
use orderly::model::{
    Admin, AlertCause, Category, Email, PasswordReset, Principal, Product, ProductName, Role, StockAdjustment,
    StockAlert, Username,
};
use orderly::store::{
    AccountLogin, AdjustmentWrite, LowStockCheck, PageRequest, PasswordChange, ProductFilter, Store, StoreError,
    TokenCheck, UniqueKey,
};
use time::Duration;
use tokio::task::JoinSet;
use uuid::Uuid;

/// Stores keep password hashes opaque; any string will do here.
const HASH: &str = "$argon2id$v=19$m=2048,t=1,p=1$c2FsdA$aGFzaA";

/// Races 50 inserts of one unique key (alternating case): (won, refused as `key`).
async fn race<F, Fut>(key: UniqueKey, insert: F) -> (usize, usize)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
{
    let mut racers = JoinSet::new();
    for i in 0..50 {
        racers.spawn(insert(i));
    }
    let (mut won, mut duplicate) = (0, 0);
    while let Some(result) = racers.join_next().await {
        match result.expect("task") {
            Ok(()) => won += 1,
            Err(StoreError::Duplicate(k)) if k == key => duplicate += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    (won, duplicate)
}

async fn customers_round_trip(store: Arc<dyn Store>) {
    let ada = customer("ada@example.com");
    store.insert_customer(&ada, HASH).await.expect("insert");
    assert_eq!(store.get_customer(ada.id).await.expect("get"), Some(ada));
    assert_eq!(store.get_customer(Uuid::now_v7()).await.expect("get"), None);
}

async fn customer_emails_are_unique_case_insensitively(store: Arc<dyn Store>) {
    store.insert_customer(&customer("ada@example.com"), HASH).await.expect("first");
    let again = store.insert_customer(&customer("ADA@Example.com"), HASH).await;
    assert!(matches!(again, Err(StoreError::Duplicate(UniqueKey::CustomerEmail))), "{again:?}");
}

async fn racing_sign_ups_with_one_email_admit_exactly_one(store: Arc<dyn Store>) {
    let (won, duplicate) = race(UniqueKey::CustomerEmail, |i| {
        let store = Arc::clone(&store);
        let email = if i % 2 == 0 { "race@example.com" } else { "RACE@example.com" };
        async move { store.insert_customer(&customer(email), HASH).await }
    })
    .await;
    assert_eq!((won, duplicate), (1, 49));
    let all = all_pages(100, |p| {
        let store = Arc::clone(&store);
        async move { store.list_customers(&p).await }
    })
    .await;
    assert_eq!(all.len(), 1);
}

async fn customer_updates_check_the_version_and_move_the_email(store: Arc<dyn Store>) {
    let ada = customer("ada@example.com");
    let bob = customer("bob@example.com");
    store.insert_customer(&ada, HASH).await.expect("ada");
    store.insert_customer(&bob, HASH).await.expect("bob");

    let renamed = next_version(&ada, |c| {
        c.email = Email::parse("email", "lovelace@example.com").expect("valid");
        c.version = 2;
    });
    store.update_customer(&ada, &renamed).await.expect("update");
    assert_eq!(store.get_customer(ada.id).await.expect("get"), Some(renamed.clone()));

    // A write based on the old version is refused and changes nothing.
    let stale = next_version(&ada, |c| c.version = 2);
    assert!(matches!(store.update_customer(&ada, &stale).await, Err(StoreError::VersionConflict)));
    assert_eq!(store.get_customer(ada.id).await.expect("get"), Some(renamed.clone()));

    // The old email is free again; the new one is taken.
    store.insert_customer(&customer("ADA@example.com"), HASH).await.expect("old email reusable");
    let steal = next_version(&bob, |c| {
        c.email = Email::parse("email", "Lovelace@example.com").expect("valid");
        c.version = 2;
    });
    let result = store.update_customer(&bob, &steal).await;
    assert!(matches!(result, Err(StoreError::Duplicate(UniqueKey::CustomerEmail))), "{result:?}");
    assert_eq!(store.get_customer(bob.id).await.expect("get"), Some(bob));
}

async fn customers_list_in_sign_up_order_across_pages(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let c = customer(&format!("c{i}@example.com"));
        ids.push(c.id);
        store.insert_customer(&c, HASH).await.expect("insert");
    }
    let listed: Vec<Uuid> = all_pages(3, |p| {
        let store = Arc::clone(&store);
        async move { store.list_customers(&p).await }
    })
    .await
    .into_iter()
    .map(|c| c.id)
    .collect();
    assert_eq!(listed, ids);

    let first = store.list_customers(&PageRequest::first(3)).await.expect("page");
    assert_eq!(first.items.len(), 3);
    assert!(first.next_token.is_some());
    let exact = store.list_customers(&PageRequest::first(7)).await.expect("page");
    assert_eq!((exact.items.len(), exact.next_token), (7, None), "no token when nothing follows");

    // A well-formed token whose key has an empty value (DynamoDB would reject it): refused too.
    let empty = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"pk":"","gsi1pk":"CUSTOMER","gsi1sk":"x"}"#,
    );
    for bad in ["garbage", "e30", "eyJhZnRlciI6MX0", empty.as_str()] {
        let result = store.list_customers(&PageRequest { limit: 3, token: Some(bad.into()) }).await;
        assert!(matches!(result, Err(StoreError::InvalidPageToken)), "{bad}: {result:?}");
    }
}

async fn products_round_trip(store: Arc<dyn Store>) {
    let mug = product("Blue Mug", "kitchen", 1299, 10);
    store.insert_product(&mug).await.expect("insert");
    assert_eq!(store.get_product(mug.id).await.expect("get"), Some(mug));
    assert_eq!(store.get_product(Uuid::now_v7()).await.expect("get"), None);
    let plain = next_version(&product("Plain Box", "storage", 0, 0), |p| p.description.clear());
    store.insert_product(&plain).await.expect("insert");
    assert_eq!(store.get_product(plain.id).await.expect("get"), Some(plain), "empty text round-trips");
}

async fn racing_creates_with_one_product_name_admit_exactly_one(store: Arc<dyn Store>) {
    let (won, duplicate) = race(UniqueKey::ProductName, |i| {
        let store = Arc::clone(&store);
        let name = if i % 2 == 0 { "Hot Item" } else { "HOT ITEM" };
        async move { store.insert_product(&product(name, "kitchen", 100, 1)).await }
    })
    .await;
    assert_eq!((won, duplicate), (1, 49));
    let categories = store.list_categories().await.expect("categories");
    assert_eq!(categories.len(), 1);
    assert_eq!(categories[0].product_count, 1, "only the winner is counted");
}

async fn product_updates_check_the_version_and_keep_names_and_counts(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 500, 3);
    let lamp = product("Lamp", "lighting", 2500, 1);
    store.insert_product(&mug).await.expect("mug");
    store.insert_product(&lamp).await.expect("lamp");

    let moved = next_version(&mug, |p| {
        p.name = ProductName::parse("name", "Big Mug").expect("valid");
        p.category = Category::parse("category", "lighting").expect("valid");
        p.version = 2;
    });
    store.update_product(&mug, &moved, None).await.expect("update");
    assert_eq!(store.get_product(mug.id).await.expect("get"), Some(moved.clone()));
    let counts: Vec<(String, u64)> = store
        .list_categories()
        .await
        .expect("categories")
        .into_iter()
        .map(|c| (c.name.to_string(), c.product_count))
        .collect();
    assert_eq!(counts, vec![("lighting".to_owned(), 2)], "empty categories disappear");

    let stale = next_version(&mug, |p| p.stock = 99);
    assert!(matches!(store.update_product(&mug, &stale, None).await, Err(StoreError::VersionConflict)));
    assert_eq!(store.get_product(mug.id).await.expect("get"), Some(moved.clone()));

    // The old name is free; taking another product's name is refused and changes nothing.
    store.insert_product(&product("MUG", "kitchen", 1, 1)).await.expect("old name reusable");
    let clash = next_version(&lamp, |p| {
        p.name = ProductName::parse("name", "big mug").expect("valid");
        p.version = 2;
    });
    let result = store.update_product(&lamp, &clash, None).await;
    assert!(matches!(result, Err(StoreError::Duplicate(UniqueKey::ProductName))), "{result:?}");
    assert_eq!(store.get_product(lamp.id).await.expect("get"), Some(lamp));

    // A stock-only change is a plain conditional write.
    let restocked = next_version(&moved, |p| {
        p.stock = 30;
        p.version = 3;
    });
    store.update_product(&moved, &restocked, None).await.expect("restock");
    assert_eq!(store.get_product(mug.id).await.expect("get").map(|p| p.stock), Some(30));
}

async fn deleting_a_product_checks_the_version_and_frees_its_name(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 500, 3);
    store.insert_product(&mug).await.expect("insert");
    let newer = next_version(&mug, |p| p.version = 2);
    assert!(matches!(store.delete_product(&newer).await, Err(StoreError::VersionConflict)));
    assert!(store.get_product(mug.id).await.expect("get").is_some());

    store.delete_product(&mug).await.expect("delete");
    assert_eq!(store.get_product(mug.id).await.expect("get"), None);
    assert!(matches!(store.delete_product(&mug).await, Err(StoreError::VersionConflict)));
    assert!(store.list_categories().await.expect("categories").is_empty());
    store.insert_product(&product("mug", "kitchen", 1, 1)).await.expect("name reusable");
}

async fn product_lists_filter_and_paginate_by_name(store: Arc<dyn Store>) {
    let catalog = [
        ("Apple Peeler", "kitchen", 800, 0),
        ("apple slicer", "kitchen", 1200, 5),
        ("Axe", "garden", 4500, 2),
        ("Bulb", "lighting", 300, 100),
        ("Candle", "lighting", 900, 0),
        ("Desk Lamp", "lighting", 3500, 7),
        ("Garden Hose", "garden", 2500, 3),
        ("Kettle", "kitchen", 3000, 1),
    ];
    for (name, category, price, stock) in catalog {
        store.insert_product(&product(name, category, price, stock)).await.expect("insert");
    }
    let names = |filter: ProductFilter, limit: u32| {
        let store = Arc::clone(&store);
        async move {
            all_pages(limit, |p| {
                let (store, filter) = (Arc::clone(&store), filter.clone());
                async move { store.list_products(&filter, &p).await }
            })
            .await
            .into_iter()
            .map(|p| p.name.as_str().to_owned())
            .collect::<Vec<_>>()
        }
    };
    let category = |c: &str| Some(Category::parse("category", c).expect("valid"));

    let everything = names(ProductFilter::default(), 3).await;
    assert_eq!(
        everything,
        ["Apple Peeler", "apple slicer", "Axe", "Bulb", "Candle", "Desk Lamp", "Garden Hose", "Kettle"]
    );
    assert_eq!(
        names(ProductFilter { category: category("lighting"), ..Default::default() }, 2).await,
        ["Bulb", "Candle", "Desk Lamp"]
    );
    assert_eq!(
        names(ProductFilter { name_prefix: Some("apple".into()), ..Default::default() }, 1).await,
        ["Apple Peeler", "apple slicer"]
    );
    assert_eq!(
        names(ProductFilter { min_price: Some(900), max_price: Some(3000), ..Default::default() }, 2).await,
        ["apple slicer", "Candle", "Garden Hose", "Kettle"]
    );
    assert_eq!(
        names(ProductFilter { category: category("kitchen"), in_stock: Some(true), ..Default::default() }, 1).await,
        ["apple slicer", "Kettle"]
    );
    assert_eq!(
        names(ProductFilter { in_stock: Some(false), ..Default::default() }, 5).await,
        ["Apple Peeler", "Candle"]
    );
    assert!(names(ProductFilter { category: category("toys"), ..Default::default() }, 5).await.is_empty());

    let summary: Vec<(String, u64)> = store
        .list_categories()
        .await
        .expect("categories")
        .into_iter()
        .map(|c| (c.name.to_string(), c.product_count))
        .collect();
    assert_eq!(summary, [("garden".into(), 2), ("kitchen".into(), 3), ("lighting".into(), 3)]);

    // A token from one list is not accepted by another.
    let first = store.list_products(&ProductFilter::default(), &PageRequest::first(2)).await.expect("page");
    let token = first.next_token.expect("more pages");
    let mismatched = store
        .list_products(
            &ProductFilter { category: category("garden"), ..Default::default() },
            &PageRequest { limit: 2, token: Some(token) },
        )
        .await;
    if let Ok(page) = &mismatched {
        // SQLite's keyset token is a position, valid in any list ordered by name.
        assert!(page.items.iter().all(|p| p.category.as_str() == "garden"));
    }
    let unique: HashSet<String> = everything.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(unique.len(), everything.len());
}

async fn logins_lead_to_customers_and_admins_and_follow_email_changes(store: Arc<dyn Store>) {
    let ada = customer("Ada@Example.com");
    store.insert_customer(&ada, "ada-hash").await.expect("customer");
    let admin =
        Admin { id: Uuid::now_v7(), username: Username::parse("username", "root").expect("valid"), created_at: now() };
    store.insert_admin(&admin, "admin-hash").await.expect("admin");
    let again =
        Admin { id: Uuid::now_v7(), username: Username::parse("username", "root").expect("valid"), created_at: now() };
    assert!(matches!(store.insert_admin(&again, "x").await, Err(StoreError::Duplicate(UniqueKey::AdminUsername))));

    let login = store.find_login("ada@example.com").await.expect("find").expect("customer login");
    assert_eq!((login.subject, login.role, login.password_hash.as_str()), (ada.id, Role::Customer, "ada-hash"));
    let login = store.find_login("root").await.expect("find").expect("admin login");
    assert_eq!((login.subject, login.role, login.password_hash.as_str()), (admin.id, Role::Admin, "admin-hash"));
    assert!(store.find_login("nobody@example.com").await.expect("find").is_none());

    let moved = next_version(&ada, |c| {
        c.email = Email::parse("email", "countess@example.com").expect("valid");
        c.version = 2;
    });
    store.update_customer(&ada, &moved).await.expect("update");
    assert!(store.find_login("ada@example.com").await.expect("find").is_none(), "old login gone");
    let login = store.find_login("countess@example.com").await.expect("find").expect("login moved");
    assert_eq!((login.subject, login.password_hash.as_str()), (ada.id, "ada-hash"), "with its password");
}

async fn sessions_end_with_revocation_or_a_missing_principal(store: Arc<dyn Store>) {
    let ada = customer("ada@example.com");
    store.insert_customer(&ada, HASH).await.expect("customer");
    let principal = Principal { id: ada.id, role: Role::Customer };
    let t = now();
    let (jti, other_jti) = (Uuid::now_v7(), Uuid::now_v7());
    let token = |jti, at| TokenCheck { jti, issued_at: t - Duration::minutes(1), now: at };
    assert!(store.session_is_valid(&principal, token(jti, t)).await.expect("check"));

    store.revoke_token(jti, t + Duration::minutes(15)).await.expect("revoke");
    assert!(!store.session_is_valid(&principal, token(jti, t)).await.expect("check"), "revoked");
    assert!(store.session_is_valid(&principal, token(other_jti, t)).await.expect("check"), "only that token");
    assert!(
        store.session_is_valid(&principal, token(jti, t + Duration::minutes(16))).await.expect("check"),
        "a revocation is judged by its expiry, not by when TTL deletes it"
    );

    let as_admin = Principal { id: ada.id, role: Role::Admin };
    assert!(!store.session_is_valid(&as_admin, token(other_jti, t)).await.expect("check"), "no such admin");
    let stranger = Principal { id: Uuid::now_v7(), role: Role::Customer };
    assert!(!store.session_is_valid(&stranger, token(other_jti, t)).await.expect("check"), "no such customer");

    // The same answers from the read of an order's context, which confirms a session in passing.
    let revoked_in_context = |check: TokenCheck| {
        let store = store.clone();
        async move { store.order_context(ada.id, &[], Some(check)).await.expect("context").token_revoked }
    };
    assert!(revoked_in_context(token(jti, t)).await, "revoked");
    assert!(!revoked_in_context(token(other_jti, t)).await, "only that token");
    assert!(!revoked_in_context(token(jti, t + Duration::minutes(16))).await, "until it would have expired");
    let asked_nothing = store.order_context(ada.id, &[], None).await.expect("context");
    assert!(!asked_nothing.token_revoked && asked_nothing.customer.is_some());
    let nobody = store.order_context(stranger.id, &[], Some(token(other_jti, t))).await;
    assert!(nobody.expect("context").customer.is_none(), "no such customer");
}

/// Ending an account's sessions refuses its tokens issued before then, to the millisecond,
/// until they would all have expired; other accounts' tokens and later ones stay valid, and
/// an earlier end never replaces a later one.
async fn ending_sessions_refuses_the_accounts_earlier_tokens(store: Arc<dyn Store>) {
    let (ada, bob) = (customer("ada@example.com"), customer("bob@example.com"));
    store.insert_customer(&ada, HASH).await.expect("ada");
    store.insert_customer(&bob, HASH).await.expect("bob");
    let (ada_p, bob_p) =
        (Principal { id: ada.id, role: Role::Customer }, Principal { id: bob.id, role: Role::Customer });
    let t = now();
    let issued = |at| TokenCheck { jti: Uuid::now_v7(), issued_at: at, now: t };
    let valid = |principal: Principal, check: TokenCheck| {
        let store = store.clone();
        async move {
            let checked = store.session_is_valid(&principal, check).await.expect("check");
            let context = store.order_context(principal.id, &[], Some(check)).await.expect("context");
            assert_eq!(checked, !context.token_revoked, "the context's read judges the token the same way");
            checked
        }
    };
    store.end_sessions(&ada_p, t, t + Duration::minutes(15)).await.expect("end");
    assert!(!valid(ada_p, issued(t - Duration::milliseconds(1))).await, "issued a millisecond before");
    assert!(!valid(ada_p, issued(t - Duration::minutes(10))).await);
    assert!(valid(ada_p, issued(t)).await, "issued at the end itself: the token a change hands out");
    assert!(valid(ada_p, issued(t + Duration::seconds(1))).await, "issued after");
    assert!(valid(bob_p, issued(t - Duration::minutes(10))).await, "another account's tokens");
    let later = TokenCheck { now: t + Duration::minutes(16), ..issued(t - Duration::minutes(10)) };
    assert!(valid(ada_p, later).await, "judged by the end's own expiry, not by when it is collected");

    store.end_sessions(&ada_p, t - Duration::minutes(5), t + Duration::minutes(10)).await.expect("an earlier end");
    assert!(!valid(ada_p, issued(t - Duration::milliseconds(1))).await, "the later end stands");
    store.end_sessions(&ada_p, t + Duration::seconds(2), t + Duration::minutes(15)).await.expect("a later end");
    assert!(!valid(ada_p, issued(t + Duration::seconds(1))).await, "a later end moves it on");
}

/// A password change stores the new hash and ends the account's sessions in one write, only
/// if the login is still the one read: a change or an email move meanwhile is a conflict and
/// writes nothing.
async fn password_changes_check_the_login_read_and_end_sessions(store: Arc<dyn Store>) {
    let ada = customer("ada@example.com");
    store.insert_customer(&ada, "ada-hash").await.expect("customer");
    let admin =
        Admin { id: Uuid::now_v7(), username: Username::parse("username", "root").expect("valid"), created_at: now() };
    store.insert_admin(&admin, "admin-hash").await.expect("admin");
    let ada_p = Principal { id: ada.id, role: Role::Customer };
    let admin_p = Principal { id: admin.id, role: Role::Admin };
    assert_eq!(
        store.login_of(&ada_p).await.expect("read"),
        Some(AccountLogin { login: "ada@example.com".into(), password_hash: "ada-hash".into() })
    );
    let root = store.login_of(&admin_p).await.expect("read").expect("admin login");
    assert_eq!((root.login.as_str(), root.password_hash.as_str()), ("root", "admin-hash"));
    let stranger = Principal { id: Uuid::now_v7(), role: Role::Customer };
    assert_eq!(store.login_of(&stranger).await.expect("read"), None);
    assert_eq!(store.login_of(&Principal { role: Role::Admin, ..ada_p }).await.expect("read"), None, "not an admin");

    let t = now();
    let old_token = TokenCheck { jti: Uuid::now_v7(), issued_at: t - Duration::seconds(1), now: t };
    let read = store.login_of(&ada_p).await.expect("read").expect("login");
    let change = |principal, login, hash| PasswordChange {
        principal,
        login,
        new_hash: hash,
        sessions_before: t,
        sessions_until: t + Duration::minutes(15),
        reset: None,
    };
    store.change_password(change(&ada_p, &read, "new-hash")).await.expect("change");
    assert_eq!(store.find_login("ada@example.com").await.expect("find").expect("login").password_hash, "new-hash");
    assert!(!store.session_is_valid(&ada_p, old_token).await.expect("check"), "earlier tokens refused");
    assert!(
        store.session_is_valid(&ada_p, TokenCheck { issued_at: t, ..old_token }).await.expect("check"),
        "the new token is valid"
    );
    assert!(
        matches!(store.change_password(change(&ada_p, &read, "stale-hash")).await, Err(StoreError::VersionConflict)),
        "checked against a hash no longer stored"
    );

    // An email move between the read and the change: the login read is not this account's now.
    let fresh = store.login_of(&ada_p).await.expect("read").expect("login");
    let moved = next_version(&ada, |c| {
        c.email = Email::parse("email", "countess@example.com").expect("valid");
        c.version = 2;
    });
    store.update_customer(&ada, &moved).await.expect("email change");
    assert!(
        matches!(store.change_password(change(&ada_p, &fresh, "late-hash")).await, Err(StoreError::VersionConflict)),
        "the login moved"
    );
    let login = store.find_login("countess@example.com").await.expect("find").expect("moved login");
    assert_eq!(login.password_hash, "new-hash", "nothing written by the refused changes");

    let root_token = TokenCheck { jti: Uuid::now_v7(), issued_at: t - Duration::seconds(1), now: t };
    store.change_password(change(&admin_p, &root, "admin-new")).await.expect("admin change");
    assert_eq!(store.find_login("root").await.expect("find").expect("login").password_hash, "admin-new");
    assert!(!store.session_is_valid(&admin_p, root_token).await.expect("check"), "the admin's earlier tokens");

    // A later end (a logout everywhere while the change was hashing) stands: the change goes
    // through without moving it back.
    store.end_sessions(&admin_p, t + Duration::seconds(2), t + Duration::minutes(15)).await.expect("a later end");
    let root = store.login_of(&admin_p).await.expect("read").expect("admin login");
    store.change_password(change(&admin_p, &root, "admin-newer")).await.expect("the change, under a later end");
    assert_eq!(store.find_login("root").await.expect("find").expect("login").password_hash, "admin-newer");
    let between = TokenCheck { jti: Uuid::now_v7(), issued_at: t + Duration::seconds(1), now: t };
    assert!(!store.session_is_valid(&admin_p, between).await.expect("check"), "the later end still holds");
}

/// A password reset is found by its hash, and a change that uses it up does so once, only while
/// it is live; a refused one writes nothing (neither the hash nor the end of the sessions).
async fn password_resets_are_used_once_and_only_while_live(store: Arc<dyn Store>) {
    let ada = customer("ada@example.com");
    store.insert_customer(&ada, "ada-hash").await.expect("customer");
    let principal = Principal { id: ada.id, role: Role::Customer };
    let t = now();
    let reset = |hash: &str, expires_at| PasswordReset {
        id: Uuid::now_v7(),
        token_hash: hash.to_owned(),
        customer_id: ada.id,
        login: "ada@example.com".into(),
        for_password: "the hash's digest".into(),
        expires_at,
        used_at: None,
    };
    let (live, expired) = (reset("aa11", t + Duration::minutes(30)), reset("bb22", t - Duration::seconds(1)));
    store.insert_password_reset(&live).await.expect("live reset");
    store.insert_password_reset(&expired).await.expect("expired reset");
    assert_eq!(store.find_password_reset("aa11").await.expect("find"), Some(live.clone()));
    assert_eq!(store.find_password_reset("cc33").await.expect("find"), None);

    let earlier_token = TokenCheck { jti: Uuid::now_v7(), issued_at: t - Duration::seconds(1), now: t };
    let change = |login, hash, reset| PasswordChange {
        principal: &principal,
        login,
        new_hash: hash,
        sessions_before: t,
        sessions_until: t + Duration::minutes(15),
        reset: Some(reset),
    };
    let read = store.login_of(&principal).await.expect("read").expect("login");
    assert!(
        matches!(store.change_password(change(&read, "too-late", &expired)).await, Err(StoreError::VersionConflict)),
        "an expired reset"
    );
    assert_eq!(store.login_of(&principal).await.expect("read"), Some(read.clone()), "no hash written");
    assert!(store.session_is_valid(&principal, earlier_token).await.expect("check"), "no session ended");

    let stale = AccountLogin { password_hash: "a hash no longer stored".into(), ..read.clone() };
    assert!(
        matches!(store.change_password(change(&stale, "raced", &live)).await, Err(StoreError::VersionConflict)),
        "a live reset with a stale read of the login"
    );
    assert_eq!(store.find_password_reset("aa11").await.expect("find").and_then(|r| r.used_at), None, "still unused");
    store.change_password(change(&read, "reset-hash", &live)).await.expect("a live reset");
    assert_eq!(store.find_password_reset("aa11").await.expect("find").and_then(|r| r.used_at), Some(t), "used up");
    assert!(!store.session_is_valid(&principal, earlier_token).await.expect("check"), "sessions ended");
    let fresh = store.login_of(&principal).await.expect("read").expect("login");
    assert_eq!(fresh.password_hash, "reset-hash");
    assert!(
        matches!(store.change_password(change(&fresh, "again", &live)).await, Err(StoreError::VersionConflict)),
        "once only"
    );
    assert_eq!(store.login_of(&principal).await.expect("read").expect("login").password_hash, "reset-hash");
}

/// Expired rows are collected in bounded batches, never a live one; a backend whose database
/// expires rows itself (DynamoDB's TTL) collects none. Either way reads judge the expiry.
async fn expired_rows_are_collected_in_batches_and_live_ones_kept(store: Arc<dyn Store>) {
    let t = now();
    let ada = customer("ada@example.com");
    store.insert_customer(&ada, HASH).await.expect("customer");
    let principal = Principal { id: ada.id, role: Role::Customer };
    let live = Uuid::now_v7();
    store.revoke_token(live, t + Duration::minutes(15)).await.expect("revoke");
    for _ in 0..3 {
        store.revoke_token(Uuid::now_v7(), t - Duration::minutes(1)).await.expect("an expired revocation");
    }
    let past_window = t - Duration::minutes(15);
    for key in ["account:a", "account:b"] {
        store.acquire_attempt(key, 10, past_window).await.expect("a past window's counter");
    }
    store.acquire_attempt("account:a", 10, t + Duration::minutes(15)).await.expect("this window's counter");
    let gone = customer("gone@example.com");
    store.insert_customer(&gone, HASH).await.expect("customer");
    let gone = Principal { id: gone.id, role: Role::Customer };
    store.end_sessions(&gone, t - Duration::minutes(20), t - Duration::minutes(5)).await.expect("an expired end");
    store.end_sessions(&principal, t, t + Duration::minutes(15)).await.expect("a live end");
    let expired_reset = PasswordReset {
        id: Uuid::now_v7(),
        token_hash: "expired".into(),
        customer_id: ada.id,
        login: "ada@example.com".into(),
        for_password: "the hash's digest".into(),
        expires_at: t - Duration::minutes(1),
        used_at: None,
    };
    store.insert_password_reset(&expired_reset).await.expect("an expired reset");

    let first = store.delete_expired(t, 2).await.expect("delete");
    assert!(first == 0 || first == 2, "at most the limit: {first}");
    if first == 2 {
        assert_eq!(store.delete_expired(t, 100).await.expect("delete"), 5, "the rest, and only the expired");
        assert_eq!(store.delete_expired(t, 100).await.expect("delete"), 0);
    }
    let live_token = TokenCheck { jti: live, issued_at: t - Duration::minutes(1), now: t };
    assert!(!store.session_is_valid(&principal, live_token).await.expect("check"), "a live revocation stays");
    let before_the_end = TokenCheck { jti: Uuid::now_v7(), ..live_token };
    assert!(!store.session_is_valid(&principal, before_the_end).await.expect("check"), "a live end stays");
    let counts = store.attempt_counts(&["account:a".to_owned()], t + Duration::minutes(15)).await.expect("counts");
    assert_eq!(counts, [1], "a live counter stays");
}

async fn attempt_counters_are_atomic_per_window_and_clearable(store: Arc<dyn Store>) {
    let window = now() + Duration::minutes(15);
    let mut racers = JoinSet::new();
    for _ in 0..40 {
        let store = Arc::clone(&store);
        racers.spawn(async move { store.acquire_attempt("account:ada", 10, window).await.expect("acquire") });
    }
    let granted = racers.join_all().await.into_iter().filter(|g| *g).count();
    assert_eq!(granted, 10, "exactly the limit, however many race");
    assert!(!store.acquire_attempt("account:ada", 10, window).await.expect("acquire"));

    let keys = ["account:ada".to_owned(), "account:nobody".to_owned(), "account:bob".to_owned()];
    assert_eq!(store.attempt_counts(&keys, window).await.expect("counts"), [10, 0, 0], "a refused take counts nothing");
    assert!(store.acquire_attempt("account:bob", 10, window).await.expect("acquire"), "counters are per key");
    assert_eq!(store.attempt_counts(&keys, window).await.expect("counts"), [10, 0, 1]);
    let next_window = window + Duration::minutes(15);
    assert!(
        store.acquire_attempt("account:ada", 10, next_window).await.expect("acquire"),
        "a new window starts at zero"
    );
    assert_eq!(store.attempt_counts(&keys, next_window).await.expect("counts"), [1, 0, 0]);

    let cleared = ["account:ada".to_owned(), "account:nobody".to_owned()];
    store.clear_attempts(&cleared, window).await.expect("clear");
    assert_eq!(store.attempt_counts(&keys, window).await.expect("counts"), [0, 0, 1], "only the keys named");
    assert_eq!(store.attempt_counts(&keys, next_window).await.expect("counts"), [1, 0, 0], "in their window only");
    assert!(store.acquire_attempt("account:ada", 1, window).await.expect("acquire"), "a cleared counter counts anew");
    assert!(!store.acquire_attempt("account:ada", 1, window).await.expect("acquire"));
}

fn adjustment(product: &Product, delta: i64) -> StockAdjustment {
    StockAdjustment {
        id: Uuid::now_v7(),
        product_id: product.id,
        delta,
        reason: "stocktake".into(),
        actor: "admin:test".into(),
        at: now(),
    }
}

/// The alert a check expects for `product` left at `stock` below `threshold`.
fn alert(product: &Product, stock: i64, threshold: i64, cause: AlertCause) -> StockAlert {
    StockAlert {
        id: Uuid::now_v7(),
        product_id: product.id,
        product_name: product.name.as_str().to_owned(),
        stock,
        threshold,
        cause,
        created_at: now(),
        acknowledged_at: None,
        acknowledged_by: None,
        published_at: None,
    }
}

/// What a stock move could have touched: the product, its adjustments, every alert.
async fn stock_footprint(store: &dyn Store, product: Uuid) -> (Option<Product>, usize, usize) {
    let adjustments = store.list_adjustments(product, &PageRequest::first(100)).await.expect("adjustments");
    let alerts = store.list_alerts(None, &PageRequest::first(100)).await.expect("alerts");
    (store.get_product(product).await.expect("product"), adjustments.items.len(), alerts.items.len())
}

/// A stock move records an alert only when its check holds: with an alert, the stock exactly
/// as read (so the alert names the stock it left); without one, a stock the move does not take
/// across the line. Anything else is a stale read and writes nothing; so is a changed
/// threshold. A move below zero is short stock.
async fn stock_moves_record_exactly_the_crossing_they_were_read_for(store: Arc<dyn Store>) {
    let mut kettle = product("Kettle", "kitchen", 1000, 10);
    kettle.low_stock_threshold = 5;
    store.insert_product(&kettle).await.expect("kettle");
    let untouched = stock_footprint(&*store, kettle.id).await;

    let refusals = [
        (-6, LowStockCheck { threshold: 5, alert: None }, StoreError::VersionConflict),
        (
            -6,
            LowStockCheck { threshold: 6, alert: Some(alert(&kettle, 4, 6, AlertCause::Adjustment)) },
            StoreError::VersionConflict,
        ),
        (
            -6,
            LowStockCheck { threshold: 5, alert: Some(alert(&kettle, 3, 5, AlertCause::Adjustment)) },
            StoreError::VersionConflict,
        ),
        (
            -11,
            LowStockCheck { threshold: 5, alert: Some(alert(&kettle, -1, 5, AlertCause::Adjustment)) },
            StoreError::InsufficientStock(vec![kettle.id]),
        ),
    ];
    for (delta, check, expected) in refusals {
        let moved = adjustment(&kettle, delta);
        let result = store
            .adjust_stock(AdjustmentWrite { adjustment: &moved, low_stock: &check, stock_shards: 1, idempotency: None })
            .await;
        assert_eq!(format!("{result:?}"), format!("{:?}", Err::<(), _>(expected)), "{delta} with {check:?}");
        assert_eq!(stock_footprint(&*store, kettle.id).await, untouched);
    }

    let crossing = alert(&kettle, 4, 5, AlertCause::Adjustment);
    let check = LowStockCheck { threshold: 5, alert: Some(crossing.clone()) };
    store
        .adjust_stock(AdjustmentWrite {
            adjustment: &adjustment(&kettle, -6),
            low_stock: &check,
            stock_shards: 1,
            idempotency: None,
        })
        .await
        .expect("crossing");
    let below = LowStockCheck { threshold: 5, alert: None };
    store
        .adjust_stock(AdjustmentWrite {
            adjustment: &adjustment(&kettle, -1),
            low_stock: &below,
            stock_shards: 1,
            idempotency: None,
        })
        .await
        .expect("below");
    store
        .adjust_stock(AdjustmentWrite {
            adjustment: &adjustment(&kettle, 10),
            low_stock: &below,
            stock_shards: 1,
            idempotency: None,
        })
        .await
        .expect("up");
    let read = store.get_product(kettle.id).await.expect("get").expect("kettle");
    assert_eq!(read.stock, 13);
    assert_eq!(store.list_adjustments(kettle.id, &PageRequest::first(10)).await.expect("trail").items.len(), 3);
    assert_eq!(
        store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items,
        std::slice::from_ref(&crossing)
    );

    // An edit: taking 13 down to 4 crosses, so it needs the alert, and the stock as read.
    let edited = next_version(&read, |p| {
        p.stock = 4;
        p.version = read.version + 1;
    });
    assert!(matches!(store.update_product(&read, &edited, None).await, Err(StoreError::VersionConflict)));
    let edit_alert = alert(&read, 4, 5, AlertCause::Edit);
    let orders_meanwhile = LowStockCheck { threshold: 5, alert: None };
    store
        .adjust_stock(AdjustmentWrite {
            adjustment: &adjustment(&read, -1),
            low_stock: &orders_meanwhile,
            stock_shards: 1,
            idempotency: None,
        })
        .await
        .expect("an order-sized move");
    let result = store.update_product(&read, &edited, Some(&edit_alert)).await;
    assert!(matches!(result, Err(StoreError::VersionConflict)), "the stock moved since the read: {result:?}");
    let read = store.get_product(kettle.id).await.expect("get").expect("kettle");
    let edited = next_version(&read, |p| {
        p.stock = 4;
        p.version = read.version + 1;
    });
    store.update_product(&read, &edited, Some(&edit_alert)).await.expect("edit crossing");

    // The outbox: oldest first, until published; acknowledgement is separate and first wins.
    let unpublished: Vec<Uuid> = store.unpublished_alerts(10).await.expect("outbox").iter().map(|a| a.id).collect();
    assert_eq!(unpublished, [crossing.id, edit_alert.id]);
    store.mark_alert_published(crossing.id, now()).await.expect("published");
    store.mark_alert_published(crossing.id, now() + Duration::hours(1)).await.expect("again: no-op");
    let unpublished: Vec<Uuid> = store.unpublished_alerts(10).await.expect("outbox").iter().map(|a| a.id).collect();
    assert_eq!(unpublished, [edit_alert.id]);
    let acknowledged = store.acknowledge_alert(edit_alert.id, "admin:1", now()).await.expect("ack").expect("found");
    let again = store.acknowledge_alert(edit_alert.id, "admin:2", now()).await.expect("ack").expect("found");
    assert_eq!(
        (again.acknowledged_by.as_deref(), again.acknowledged_at),
        (Some("admin:1"), acknowledged.acknowledged_at)
    );
    assert_eq!(store.acknowledge_alert(Uuid::now_v7(), "admin:1", now()).await.expect("ack"), None);
    let open = store.list_alerts(Some(false), &PageRequest::first(10)).await.expect("open").items;
    assert_eq!(open.iter().map(|a| a.id).collect::<Vec<_>>(), [crossing.id]);
    assert!(open[0].published_at.is_some());
    let closed = store.list_alerts(Some(true), &PageRequest::first(10)).await.expect("closed").items;
    assert_eq!(closed.iter().map(|a| a.id).collect::<Vec<_>>(), [edit_alert.id]);
    assert_eq!(store.get_alert(edit_alert.id).await.expect("get"), Some(acknowledged));
}

on_every_store!(
    stock_moves_record_exactly_the_crossing_they_were_read_for,
    logins_lead_to_customers_and_admins_and_follow_email_changes,
    sessions_end_with_revocation_or_a_missing_principal,
    ending_sessions_refuses_the_accounts_earlier_tokens,
    password_changes_check_the_login_read_and_end_sessions,
    password_resets_are_used_once_and_only_while_live,
    attempt_counters_are_atomic_per_window_and_clearable,
    expired_rows_are_collected_in_batches_and_live_ones_kept,
    customers_round_trip,
    customer_emails_are_unique_case_insensitively,
    racing_sign_ups_with_one_email_admit_exactly_one,
    customer_updates_check_the_version_and_move_the_email,
    customers_list_in_sign_up_order_across_pages,
    products_round_trip,
    racing_creates_with_one_product_name_admit_exactly_one,
    product_updates_check_the_version_and_keep_names_and_counts,
    deleting_a_product_checks_the_version_and_frees_its_name,
    product_lists_filter_and_paginate_by_name,
);
