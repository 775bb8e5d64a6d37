//! The store conformance suite for orders: placement, transitions, payments, refunds,
//! idempotency and counters, through the `Store` trait itself, unchanged on SQLite and DynamoDB
//! Local. A refused write must change nothing, and when several of its conditions fail at once
//! every store reports the same error (the precedence documented on `Store::insert_order` and
//! `Store::transition_order`).

mod common;

use std::future::Future;
use std::sync::Arc;

use common::entities::{all_pages, next_version, now, product};
use orderly::model::{
    AlertCause, CardSummary, IdempotencyRecord, Order, OrderCounters, OrderLine, OrderStatus, Payment, PaymentStatus,
    Product, Recipient, StockAdjustment, StockAlert, notice_of_placement,
};
use orderly::store::{
    AdjustmentWrite, Cooldown, LowStockCheck, NewOrderWrite, NoticeClaim, OrderContext, OrderFilter, PageRequest,
    PaymentChange, PaymentFilter, ProductFilter, Store, StoreError, TransitionWrite, UniqueKey,
};
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;
use uuid::Uuid;

use OrderStatus::{Cancelled, Delivered, Paid, Pending, ProcessingOrder, Shipped};

/// The Idempotency-Key the tests use (the footprint of a write includes its record).
const KEY: &str = "key-1";

/// A pending order of `quantity` of each product at the product's price.
fn order(customer: Uuid, lines: &[(&Product, i64)]) -> Order {
    let t = now();
    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|(p, quantity)| OrderLine {
            product_id: p.id,
            name: p.name.as_str().to_owned(),
            unit_price_cents: p.price_cents,
            quantity: *quantity,
            line_total_cents: p.price_cents * quantity,
        })
        .collect();
    Order {
        id: Uuid::now_v7(),
        customer_id: customer,
        status: Pending,
        total_cents: lines.iter().map(|l| l.line_total_cents).sum(),
        lines,
        recipient: None,
        shipping_address: None,
        release_at: None,
        payment_due_at: Some(t + Duration::minutes(30)),
        cancel_reason: None,
        payment_id: None,
        shipment: None,
        admin_note: None,
        correlation_id: "req-1".into(),
        history: Vec::new(),
        version: 1,
        created_at: t,
        updated_at: t,
    }
}

/// The write placing `order` for a customer with no cooldown item, without a key.
fn placement(order: &Order) -> NewOrderWrite<'_> {
    NewOrderWrite {
        order,
        low_stock: no_crossing(order),
        stock_shards: unsharded(order),
        notice: None,
        expected_cooldown: None,
        cooldown: cooldown_after(None, order),
        idempotency: None,
    }
}

/// The checks of an order that crosses no low-stock line (the products' threshold is 0).
fn no_crossing(order: &Order) -> &'static [LowStockCheck] {
    let checks: Vec<LowStockCheck> = order.lines.iter().map(|_| LowStockCheck { threshold: 0, alert: None }).collect();
    Box::leak(checks.into_boxed_slice())
}

/// The layouts of an order whose products keep their stock on their own item.
fn unsharded(order: &Order) -> &'static [u32] {
    Box::leak(vec![1; order.lines.len()].into_boxed_slice())
}

/// The cooldown a placement of `order` writes over `read`: one more slot, its units and value.
fn cooldown_after(read: Option<&Cooldown>, order: &Order) -> Cooldown {
    // As the service takes them: right after the last slot, or now when there is none.
    let mut slots = read.map(|c| c.slots.clone()).unwrap_or_default();
    slots.push(slots.last().map_or(order.created_at, |last| *last + Duration::minutes(5)));
    Cooldown {
        version: read.map_or(1, |c| c.version + 1),
        slots,
        unpaid_units: read.map_or(0, |c| c.unpaid_units) + order.lines.iter().map(|l| l.quantity).sum::<i64>(),
        unpaid_cents: read.map_or(0, |c| c.unpaid_cents) + order.total_cents,
        expires_at: order.created_at + Duration::days(1),
    }
}

/// The sweep's relay finds a notice nobody claimed behind any number of notices claimed and
/// never sent (refused by the mail service, dead-lettered): more of them than one read of the
/// relay covers.
async fn the_relay_finds_an_unclaimed_notice_behind_claimed_ones(store: Arc<dyn Store>) {
    let kettle = product("Kettle", "kitchen", 1000, 100);
    insert_products(&*store, &[&kettle]).await;
    let mut notices = Vec::new();
    for _ in 0..12 {
        let mut placed = order(Uuid::now_v7(), &[(&kettle, 1)]);
        placed.recipient = Some(Recipient { name: "Ada".into(), email: "ada@example.com".into(), phone: None });
        let notice = notice_of_placement(&placed).expect("a notice");
        let write = NewOrderWrite { notice: Some(&notice), ..placement(&placed) };
        store.insert_order(&write).await.expect("placed");
        notices.push(notice.id);
    }
    let later = now() + Duration::hours(1);
    for id in &notices[..11] {
        let claim = store.claim_notice(*id, later, later + Duration::minutes(1)).await.expect("claim");
        assert!(matches!(claim, NoticeClaim::Claimed(_)), "{claim:?}");
    }
    let relayed: Vec<Uuid> = store.notices_to_relay(later, 1).await.expect("relay").iter().map(|n| n.id).collect();
    assert_eq!(relayed, [notices[11]]);
}

/// A notice marked sent carries its stamp wherever it is read, is claimed no more, and is
/// relayed no more.
async fn a_notice_marked_sent_is_read_with_its_stamp_and_delivered_no_more(store: Arc<dyn Store>) {
    let kettle = product("Kettle", "kitchen", 1000, 100);
    insert_products(&*store, &[&kettle]).await;
    let mut placed = order(Uuid::now_v7(), &[(&kettle, 1)]);
    placed.recipient = Some(Recipient { name: "Ada".into(), email: "ada@example.com".into(), phone: None });
    let notice = notice_of_placement(&placed).expect("a notice");
    store.insert_order(&NewOrderWrite { notice: Some(&notice), ..placement(&placed) }).await.expect("placed");
    let later = now() + Duration::hours(1);
    let claim = store.claim_notice(notice.id, later, later + Duration::minutes(1)).await.expect("claim");
    assert!(matches!(claim, NoticeClaim::Claimed(_)), "{claim:?}");
    let sent_at = later.replace_nanosecond(0).expect("a whole second") + Duration::seconds(1);
    store.mark_notice_sent(notice.id, sent_at).await.expect("marked");

    let read = store.get_notice(notice.id).await.expect("read").expect("the notice");
    assert_eq!(read.sent_at, Some(sent_at));
    assert_eq!(read.to_email, "ada@example.com", "the rest of the notice as saved");
    let listed = store.list_notices(placed.customer_id, &PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items.iter().map(|n| (n.id, n.sent_at)).collect::<Vec<_>>(), [(notice.id, Some(sent_at))]);
    let lease_over = later + Duration::minutes(2);
    let again = store.claim_notice(notice.id, lease_over, lease_over + Duration::minutes(1)).await.expect("claim");
    assert!(matches!(again, NoticeClaim::Sent), "{again:?}");
    assert!(store.notices_to_relay(lease_over + Duration::hours(1), 10).await.expect("relay").is_empty());
}

/// Places `order` as the service does: conditioned on the cooldown as just read.
async fn place(store: &dyn Store, order: &Order) -> Result<Vec<StockAlert>, StoreError> {
    place_keyed(store, order, None).await
}

async fn place_keyed(
    store: &dyn Store,
    order: &Order,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<Vec<StockAlert>, StoreError> {
    let products: Vec<Uuid> = order.lines.iter().map(|l| l.product_id).collect();
    let OrderContext { cooldown: read, products, .. } =
        store.order_context(order.customer_id, &products, None).await.expect("context");
    let shards: Vec<u32> = products.iter().map(|p| p.as_ref().map_or(1, |p| p.stock_shards)).collect();
    let write = NewOrderWrite {
        order,
        low_stock: no_crossing(order),
        stock_shards: &shards,
        notice: None,
        expected_cooldown: read.as_ref().map(|c| c.version),
        cooldown: cooldown_after(read.as_ref(), order),
        idempotency,
    };
    store.insert_order(&write).await
}

fn record(customer: Uuid, expires_at: OffsetDateTime, response: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        customer_id: customer,
        key: KEY.into(),
        request: "{}".into(),
        status_code: 201,
        response: response.into(),
        expires_at,
    }
}

/// `order` in `status`, one version and one minute on.
fn moved(order: &Order, status: OrderStatus) -> Order {
    next_version(order, |o| {
        o.status = status;
        o.version += 1;
        o.updated_at += Duration::minutes(1);
    })
}

fn transition<'a>(previous: &'a Order, updated: &'a Order) -> TransitionWrite<'a> {
    TransitionWrite { previous, updated, restock: false, payment: None, idempotency: None, notice: None }
}

/// Moves `order` to `status` with `payment`, returning the stored order.
async fn advance(store: &dyn Store, order: &Order, status: OrderStatus, payment: Option<PaymentChange<'_>>) -> Order {
    let updated = moved(order, status);
    store.transition_order(&TransitionWrite { payment, ..transition(order, &updated) }).await.expect("transition");
    updated
}

fn payment(order: &Order, status: PaymentStatus) -> Payment {
    Payment {
        id: Uuid::now_v7(),
        order_id: order.id,
        customer_id: order.customer_id,
        amount_cents: order.total_cents,
        status,
        method: "card".into(),
        card: CardSummary { brand: "visa".into(), last4: "4242".into(), exp_month: 12, exp_year: 2031 },
        gateway_reference: None,
        failure_reason: None,
        at_gateway_since: None,
        correlation_id: order.correlation_id.clone(),
        version: 1,
        created_at: now(),
        updated_at: now(),
    }
}

fn paid_as(payment: &Payment, status: PaymentStatus) -> Payment {
    next_version(payment, |p| {
        p.status = status;
        p.version += 1;
    })
}

async fn stock(store: &dyn Store, product: &Product) -> Option<i64> {
    store.get_product(product.id).await.expect("get").map(|p| p.stock)
}

async fn insert_products(store: &dyn Store, products: &[&Product]) {
    for p in products {
        store.insert_product(p).await.expect("product");
    }
}

/// The counters as (placed, non-zero counts by status, delivered, delivered seconds).
async fn counters(store: &dyn Store) -> (i64, Vec<(OrderStatus, i64)>, i64, i64) {
    let OrderCounters { placed, by_status, delivered_seconds, delivered, .. } =
        store.order_counters().await.expect("counters");
    (placed, by_status.into_iter().filter(|(_, n)| *n != 0).collect(), delivered, delivered_seconds)
}

/// Everything a write of `order` could touch.
#[derive(Debug, PartialEq)]
struct Footprint {
    /// The customer's cooldown, and the products with their stock and version.
    context: OrderContext,
    order: Option<Order>,
    idempotency: Option<IdempotencyRecord>,
    payments: Vec<Payment>,
    pending_refunds: Vec<Uuid>,
    counters: OrderCounters,
}

async fn footprint(store: &dyn Store, order: &Order) -> Footprint {
    let products: Vec<Uuid> = order.lines.iter().map(|l| l.product_id).collect();
    Footprint {
        context: store.order_context(order.customer_id, &products, None).await.expect("context"),
        order: store.get_order(order.id).await.expect("order"),
        idempotency: store.get_idempotency(order.customer_id, KEY).await.expect("idempotency"),
        payments: store
            .list_payments(&PaymentFilter { order: Some(order.id), status: None }, &PageRequest::first(100))
            .await
            .expect("payments")
            .items,
        pending_refunds: store.pending_refunds(100).await.expect("refunds"),
        counters: store.order_counters().await.expect("counters"),
    }
}

/// Runs a write of `order` that must fail with `expected`, and checks it wrote nothing.
async fn refused<T: std::fmt::Debug>(
    store: &dyn Store,
    order: &Order,
    expected: StoreError,
    write: impl Future<Output = Result<T, StoreError>>,
) {
    let before = footprint(store, order).await;
    let result = write.await;
    assert_eq!(format!("{:?}", result.err()), format!("{:?}", Some(expected)));
    assert_eq!(footprint(store, order).await, before, "a refused write changed something");
}

async fn placing_an_order_reserves_every_line_and_saves_it_with_its_cooldown_key_and_count(store: Arc<dyn Store>) {
    let (mug, lamp) = (product("Mug", "kitchen", 1299, 10), product("Lamp", "lighting", 4500, 5));
    insert_products(&*store, &[&mug, &lamp]).await;
    let placed = order(Uuid::now_v7(), &[(&mug, 3), (&lamp, 5)]);
    let saved = record(placed.customer_id, placed.created_at + Duration::hours(24), "the first answer");
    let write = NewOrderWrite { idempotency: Some(&saved), ..placement(&placed) };
    store.insert_order(&write).await.expect("placed");

    for (p, left) in [(&mug, 7), (&lamp, 0)] {
        let stored = store.get_product(p.id).await.expect("get").expect("product");
        assert_eq!((stored.stock, stored.version), (left, 1), "reserved; the catalog version is not the stock's");
    }
    assert_eq!(store.get_order(placed.id).await.expect("get"), Some(placed.clone()));
    let context = store.order_context(placed.customer_id, &[], None).await.expect("context");
    assert_eq!(context.cooldown, Some(write.cooldown.clone()));
    assert_eq!(store.get_idempotency(placed.customer_id, KEY).await.expect("get"), Some(saved));
    assert_eq!(counters(&*store).await, (1, vec![(Pending, 1)], 0, 0));
}

/// A catalog edit read before orders were placed moves the stock by its own delta and leaves
/// the version alone for reservations: nothing reserved meanwhile is lost, nothing contends.
async fn a_catalog_edit_keeps_the_reservations_made_since_its_read(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let read = store.get_product(mug.id).await.expect("get").expect("product");
    let placed = order(Uuid::now_v7(), &[(&mug, 4)]);
    store.insert_order(&placement(&placed)).await.expect("placed after the read");

    let edited = next_version(&read, |p| {
        p.description = "Holds more tea".into();
        p.stock += 5;
        p.version += 1;
    });
    store.update_product(&read, &edited, None).await.expect("the edit does not contend with the order");
    let stored = store.get_product(mug.id).await.expect("get").expect("product");
    assert_eq!((stored.stock, stored.version, stored.description.as_str()), (11, 2, "Holds more tea"));

    let too_few = next_version(&stored, |p| {
        p.stock -= 12;
        p.version += 1;
    });
    assert!(matches!(store.update_product(&stored, &too_few, None).await, Err(StoreError::VersionConflict)));
    assert_eq!(store.get_product(mug.id).await.expect("get").expect("product"), stored, "never below zero");
}

async fn a_short_line_refuses_the_whole_order_naming_only_the_short_products(store: Arc<dyn Store>) {
    let (plenty, one, none) =
        (product("Plenty", "kitchen", 100, 10), product("One", "kitchen", 100, 1), product("None", "kitchen", 100, 0));
    insert_products(&*store, &[&plenty, &one, &none]).await;
    let short = order(Uuid::now_v7(), &[(&plenty, 10), (&one, 2), (&none, 1)]);
    let saved = record(short.customer_id, short.created_at + Duration::hours(24), "never");
    let write = NewOrderWrite { idempotency: Some(&saved), ..placement(&short) };
    refused(&*store, &short, StoreError::InsufficientStock(vec![one.id, none.id]), store.insert_order(&write)).await;
    assert_eq!(stock(&*store, &plenty).await, Some(10), "the line that fitted is not reserved either");
}

/// An order's lines carry the low-stock check of the stock as read: the line that crosses
/// saves its alert with the order, and the store answers it; a threshold changed since the
/// read refuses the whole order as a stale read.
async fn an_order_saves_the_alert_of_the_line_that_crosses_and_refuses_a_stale_check(store: Arc<dyn Store>) {
    let (mut mug, lamp) = (product("Mug", "kitchen", 1299, 10), product("Lamp", "lighting", 4500, 5));
    mug.low_stock_threshold = 8;
    insert_products(&*store, &[&mug, &lamp]).await;
    let placed = order(Uuid::now_v7(), &[(&lamp, 1), (&mug, 3)]);
    let alert = StockAlert { id: Uuid::now_v7(), ..order_alert(&mug, 7, &placed) };
    let moved_threshold =
        [LowStockCheck { threshold: 0, alert: None }, LowStockCheck { threshold: 9, alert: Some(alert.clone()) }];
    let write = NewOrderWrite { low_stock: &moved_threshold, ..placement(&placed) };
    refused(&*store, &placed, StoreError::VersionConflict, store.insert_order(&write)).await;

    let seen =
        [LowStockCheck { threshold: 0, alert: None }, LowStockCheck { threshold: 8, alert: Some(alert.clone()) }];
    let saved = store.insert_order(&NewOrderWrite { low_stock: &seen, ..placement(&placed) }).await.expect("placed");
    assert_eq!(saved, std::slice::from_ref(&alert));
    assert_eq!(store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items, saved);
    assert_eq!(stock(&*store, &mug).await, Some(7));

    // Below the line already: no alert, and an alert that describes no crossing is refused.
    let next = order(Uuid::now_v7(), &[(&mug, 1)]);
    let claimed = StockAlert { id: Uuid::now_v7(), stock: 6, ..alert };
    let invalid = [LowStockCheck { threshold: 8, alert: Some(claimed.clone()) }];
    let write = NewOrderWrite { low_stock: &invalid, ..placement(&next) };
    let refusal = StoreError::Backend(format!("alert {} describes no crossing of 8", claimed.id));
    refused(&*store, &next, refusal, store.insert_order(&write)).await;
    let plain = [LowStockCheck { threshold: 8, alert: None }];
    let saved = store.insert_order(&NewOrderWrite { low_stock: &plain, ..placement(&next) }).await;
    assert_eq!(saved.expect("placed below"), []);
    assert_eq!(store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items.len(), 1);
}

/// A line whose stock moved into or out of its crossing since the read: DynamoDB refuses the
/// order as a stale read, writing nothing; the embedded store settles the line on the stock as
/// it writes. Either way the write that crosses saves the one alert naming the true stock, and
/// a write that no longer crosses saves none.
async fn a_stale_low_stock_check_is_refused_or_settled_on_the_true_stock(store: Arc<dyn Store>) {
    stale_low_stock_checks(&*store).await;
}

/// The three shapes of a stale low-stock check, each checked for what it wrote; answers how
/// many the store settled rather than refused.
async fn stale_low_stock_checks(store: &dyn Store) -> usize {
    let mut settled_writes = 0;
    let (mut mug, mut lamp, mut vase) =
        (product("Mug", "kitchen", 1299, 10), product("Lamp", "lighting", 4500, 12), product("Vase", "home", 900, 9));
    for item in [&mut mug, &mut lamp, &mut vase] {
        item.low_stock_threshold = 8;
    }
    insert_products(store, &[&mug, &lamp, &vase]).await;
    let read_at_10 = |placed: &Order| StockAlert { id: Uuid::now_v7(), ..order_alert(&mug, 7, placed) };

    // Read above the crossing, written across it (10 to 7).
    let first = order(Uuid::now_v7(), &[(&mug, 3)]);
    let blind = [LowStockCheck { threshold: 8, alert: None }];
    if let Some(saved) = settled(store, &NewOrderWrite { low_stock: &blind, ..placement(&first) }).await {
        settled_writes += 1;
        let [made] = saved.as_slice() else { panic!("one alert for the crossing: {saved:?}") };
        assert_eq!(*made, StockAlert { id: made.id, ..order_alert(&mug, 7, &first) });
        assert_eq!(store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items, saved);
        assert_eq!(stock(store, &mug).await, Some(7));
    }

    // Read as crossing (10 to 7), but the stock is 12 now: 12 to 9 crosses nothing.
    let second = order(Uuid::now_v7(), &[(&lamp, 3)]);
    let crossing =
        [LowStockCheck { threshold: 8, alert: Some(StockAlert { product_id: lamp.id, ..read_at_10(&second) }) }];
    let alerts_before = store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items;
    if let Some(saved) = settled(store, &NewOrderWrite { low_stock: &crossing, ..placement(&second) }).await {
        settled_writes += 1;
        assert_eq!(saved, []);
        assert_eq!(store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items, alerts_before);
        assert_eq!(stock(store, &lamp).await, Some(9));
    }

    // Read as crossing from 10 to 7, but the stock is 9 now: it crosses still, to 6, and the
    // alert read names the true stock.
    let third = order(Uuid::now_v7(), &[(&vase, 3)]);
    let read = StockAlert { product_id: vase.id, product_name: "Vase".into(), ..read_at_10(&third) };
    let crossing = [LowStockCheck { threshold: 8, alert: Some(read.clone()) }];
    if let Some(saved) = settled(store, &NewOrderWrite { low_stock: &crossing, ..placement(&third) }).await {
        settled_writes += 1;
        assert_eq!(saved, [StockAlert { stock: 6, ..read }]);
        assert_eq!(stock(store, &vase).await, Some(6));
    }
    settled_writes
}

/// The embedded store does settle: its one writer sees the stock as it writes, so a racer
/// that read above the line is placed, with the alert, instead of being sent to read again
/// (what keeps a flash sale on the local server from rereading twice).
#[tokio::test]
async fn the_embedded_store_settles_a_stale_low_stock_line_as_it_writes() {
    let store = common::sqlite_store();
    assert_eq!(stale_low_stock_checks(&*store).await, 3, "every stale check settled, none refused");
}

/// The alert of an order's line taking `product` to `stock`, below its threshold.
fn order_alert(product: &Product, stock: i64, placed: &Order) -> StockAlert {
    StockAlert {
        id: Uuid::nil(),
        product_id: product.id,
        product_name: product.name.as_str().to_owned(),
        stock,
        threshold: product.low_stock_threshold,
        cause: AlertCause::Order,
        created_at: placed.created_at,
        acknowledged_at: None,
        acknowledged_by: None,
        published_at: None,
    }
}

/// Runs `write`: the alerts it saved, or `None` when the store refused it as a stale read,
/// having written nothing.
async fn settled(store: &dyn Store, write: &NewOrderWrite<'_>) -> Option<Vec<StockAlert>> {
    let before = (
        footprint(store, write.order).await,
        store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items,
    );
    match store.insert_order(write).await {
        Ok(saved) => Some(saved),
        Err(StoreError::VersionConflict) => {
            let after = (
                footprint(store, write.order).await,
                store.list_alerts(None, &PageRequest::first(10)).await.expect("alerts").items,
            );
            assert_eq!(after, before, "a refused write changed something");
            None
        }
        Err(other) => panic!("neither placed nor a stale read: {other:?}"),
    }
}

async fn a_moved_price_or_a_deleted_product_is_a_version_conflict(store: Arc<dyn Store>) {
    let (mug, lamp) = (product("Mug", "kitchen", 1299, 10), product("Lamp", "lighting", 4500, 5));
    insert_products(&*store, &[&mug, &lamp]).await;
    let repriced = next_version(&mug, |p| {
        p.price_cents = 999;
        p.version = 2;
    });
    store.update_product(&mug, &repriced, None).await.expect("reprice");
    let stale = order(Uuid::now_v7(), &[(&lamp, 1), (&mug, 1)]);
    refused(&*store, &stale, StoreError::VersionConflict, place(&*store, &stale)).await;

    store.delete_product(&lamp).await.expect("delete");
    let gone = order(Uuid::now_v7(), &[(&repriced, 1), (&lamp, 1)]);
    refused(&*store, &gone, StoreError::VersionConflict, place(&*store, &gone)).await;
    place(&*store, &order(gone.customer_id, &[(&repriced, 1)])).await.expect("at the new price");
}

async fn a_placement_needs_the_cooldown_as_it_was_read(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let customer = Uuid::now_v7();
    let first = order(customer, &[(&mug, 1)]);
    let unread = NewOrderWrite { expected_cooldown: Some(1), ..placement(&first) };
    refused(&*store, &first, StoreError::VersionConflict, store.insert_order(&unread)).await;
    store.insert_order(&placement(&first)).await.expect("no cooldown yet");

    let read = store.order_context(customer, &[], None).await.expect("context").cooldown.expect("a cooldown");
    let second = order(customer, &[(&mug, 1)]);
    for stale in [None, Some(read.version + 1)] {
        let write = NewOrderWrite { expected_cooldown: stale, ..placement(&second) };
        refused(&*store, &second, StoreError::VersionConflict, store.insert_order(&write)).await;
    }
    let later = NewOrderWrite {
        expected_cooldown: Some(read.version),
        cooldown: cooldown_after(Some(&read), &second),
        ..placement(&second)
    };
    store.insert_order(&later).await.expect("the cooldown as read");
    let context = store.order_context(customer, &[], None).await.expect("context");
    assert_eq!(context.cooldown, Some(later.cooldown.clone()));
    assert_eq!((later.cooldown.slots.len(), later.cooldown.unpaid_units), (2, 2));
    assert_eq!(counters(&*store).await, (2, vec![(Pending, 2)], 0, 0));
}

/// An order that stops being unpaid gives back its units and value, a deferred order cancelled
/// before its release its slot, in the transition's own write; the cooldown's version moves on
/// so a placement that read it before reads it again.
async fn leaving_unpaid_gives_back_the_hold_and_a_cancelled_slot(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1000, 20);
    insert_products(&*store, &[&mug]).await;
    let customer = Uuid::now_v7();
    let first = order(customer, &[(&mug, 2)]);
    place(&*store, &first).await.expect("first");
    let read = store.order_context(customer, &[], None).await.expect("context").cooldown.expect("cooldown");
    let slot = read.slots[0] + Duration::minutes(5);
    let deferred = next_version(&order(customer, &[(&mug, 3)]), |o| {
        o.status = ProcessingOrder;
        o.release_at = Some(slot);
    });
    place(&*store, &deferred).await.expect("deferred");
    let cooldown =
        || async { store.order_context(customer, &[], None).await.expect("context").cooldown.expect("cooldown") };
    let held = cooldown().await;
    assert_eq!((held.slots.clone(), held.unpaid_units, held.unpaid_cents), (vec![read.slots[0], slot], 5, 5000));

    let cancelled = moved(&deferred, Cancelled);
    store
        .transition_order(&TransitionWrite { restock: true, ..transition(&deferred, &cancelled) })
        .await
        .expect("cancel");
    let after_cancel = cooldown().await;
    assert_eq!(
        (after_cancel.slots.clone(), after_cancel.unpaid_units, after_cancel.unpaid_cents),
        (vec![read.slots[0]], 2, 2000)
    );
    assert!(after_cancel.version > held.version, "a placement that read the cooldown before must read it again");
    let third = order(customer, &[(&mug, 1)]);
    let stale = NewOrderWrite { expected_cooldown: Some(held.version), ..placement(&third) };
    assert!(matches!(store.insert_order(&stale).await, Err(StoreError::VersionConflict)));

    advance(&*store, &first, Paid, None).await;
    let after_paying = cooldown().await;
    assert_eq!(
        (after_paying.slots.clone(), after_paying.unpaid_units, after_paying.unpaid_cents),
        (vec![read.slots[0]], 0, 0),
        "a paid order keeps its slot, not its hold"
    );
}

async fn an_idempotency_key_holds_per_customer_until_it_expires(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let customer = Uuid::now_v7();
    let first = order(customer, &[(&mug, 1)]);
    let expired = record(customer, first.created_at - Duration::seconds(1), "expired");
    place_keyed(&*store, &first, Some(&expired)).await.expect("first");

    // An expired record does not block: the key is taken again, and then holds.
    let second = order(customer, &[(&mug, 1)]);
    let live = record(customer, second.created_at + Duration::hours(24), "live");
    place_keyed(&*store, &second, Some(&live)).await.expect("over an expired record");
    assert_eq!(store.get_idempotency(customer, KEY).await.expect("get"), Some(live.clone()));
    let third = order(customer, &[(&mug, 1)]);
    let used = StoreError::Duplicate(UniqueKey::IdempotencyKey);
    refused(&*store, &third, used, place_keyed(&*store, &third, Some(&live))).await;

    // Keys are per customer.
    let other = order(Uuid::now_v7(), &[(&mug, 1)]);
    let theirs = record(other.customer_id, other.created_at + Duration::hours(24), "theirs");
    place_keyed(&*store, &other, Some(&theirs)).await.expect("another customer's key");
    assert_eq!(store.get_idempotency(customer, KEY).await.expect("get"), Some(live.clone()));

    assert_eq!(stock(&*store, &mug).await, Some(7));
    assert_eq!(counters(&*store).await, (3, vec![(Pending, 3)], 0, 0));
}

/// `customers` distinct customers order one unit of `product` at once, each as the service
/// does (reading again after a stale read): (placed, refused as short).
async fn rush(store: &Arc<dyn Store>, product: &Product, customers: usize) -> (usize, usize) {
    let mut racers = JoinSet::new();
    for _ in 0..customers {
        let (store, racer) = (Arc::clone(store), order(Uuid::now_v7(), &[(product, 1)]));
        racers.spawn(async move { place_retrying(&*store, &racer).await });
    }
    let (mut placed, mut short) = (0, 0);
    for result in racers.join_all().await {
        match result {
            Ok(_) => placed += 1,
            Err(StoreError::InsufficientStock(ids)) if ids == [product.id] => short += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    (placed, short)
}

async fn racing_orders_for_the_last_units_never_oversell(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let (placed, short) = rush(&store, &mug, 30).await;
    assert_eq!((placed, short), (10, 20));
    assert_eq!(stock(&*store, &mug).await, Some(0));
    assert_eq!(counters(&*store).await, (10, vec![(Pending, 10)], 0, 0));
    let listed = all_pages(4, |p| {
        let store = Arc::clone(&store);
        async move { store.list_orders(&OrderFilter::default(), &p).await }
    })
    .await;
    assert_eq!(listed.len(), 10);
}

/// A product whose stock is spread over `shards` items on DynamoDB.
fn sharded(name: &str, stock: i64, shards: u32) -> Product {
    Product { stock_shards: shards, ..product(name, "kitchen", 1299, stock) }
}

/// The products listed as in stock (the listing sums a sharded product's shards first).
async fn in_stock(store: &dyn Store) -> Vec<Product> {
    let filter = ProductFilter { in_stock: Some(true), ..Default::default() };
    store.list_products(&filter, &PageRequest::first(10)).await.expect("list").items
}

/// Places `order` as the service does, reading again after a stale read (a shard drained by
/// a concurrent order twice over).
async fn place_retrying(store: &dyn Store, order: &Order) -> Result<Vec<StockAlert>, StoreError> {
    for _ in 0..20 {
        match place(store, order).await {
            Err(StoreError::VersionConflict) => tokio::task::yield_now().await,
            other => return other,
        }
    }
    Err(StoreError::VersionConflict)
}

async fn a_sharded_product_sells_exactly_its_stock(store: Arc<dyn Store>) {
    let mug = sharded("Mug", 10, 4);
    insert_products(&*store, &[&mug]).await;
    assert_eq!(store.get_product(mug.id).await.expect("get"), Some(mug.clone()), "the shards sum to the stock");
    assert_eq!(in_stock(&*store).await, std::slice::from_ref(&mug));

    let (placed, short) = rush(&store, &mug, 30).await;
    assert_eq!((placed, short), (10, 20));
    assert_eq!(stock(&*store, &mug).await, Some(0));
    assert_eq!(counters(&*store).await.0, 10);
    assert_eq!(in_stock(&*store).await, []);
}

async fn a_sharded_line_takes_from_several_shards_and_comes_back_on_a_cancel(store: Arc<dyn Store>) {
    // One unit in each of four shards: three units are more than any one shard holds.
    let lamp = sharded("Lamp", 4, 4);
    insert_products(&*store, &[&lamp]).await;
    let three = order(Uuid::now_v7(), &[(&lamp, 3)]);
    place_retrying(&*store, &three).await.expect("placed across shards");
    assert_eq!(stock(&*store, &lamp).await, Some(1));
    let two = order(Uuid::now_v7(), &[(&lamp, 2)]);
    refused(&*store, &two, StoreError::InsufficientStock(vec![lamp.id]), place(&*store, &two)).await;

    let cancelled = moved(&three, Cancelled);
    store.transition_order(&TransitionWrite { restock: true, ..transition(&three, &cancelled) }).await.expect("cancel");
    assert_eq!(stock(&*store, &lamp).await, Some(4));

    // Placed while the product kept its stock on its own item, cancelled after it was sharded:
    // the units come back to a shard.
    let vase = product("Vase", "kitchen", 1299, 6);
    insert_products(&*store, &[&vase]).await;
    let two_vases = order(Uuid::now_v7(), &[(&vase, 2)]);
    place(&*store, &two_vases).await.expect("placed unsharded");
    let read = store.get_product(vase.id).await.expect("get").expect("vase");
    let sharded_vase = next_version(&read, |p| {
        p.stock_shards = 3;
        p.version += 1;
    });
    store.update_product(&read, &sharded_vase, None).await.expect("sharded");
    let cancelled = moved(&two_vases, Cancelled);
    store
        .transition_order(&TransitionWrite { restock: true, ..transition(&two_vases, &cancelled) })
        .await
        .expect("cancel");
    assert_eq!(stock(&*store, &vase).await, Some(6));
}

fn stock_adjustment(product: &Product, delta: i64) -> StockAdjustment {
    StockAdjustment {
        id: Uuid::now_v7(),
        product_id: product.id,
        delta,
        reason: "count".into(),
        actor: "admin:1".into(),
        at: now(),
    }
}

/// An adjustment saved with an idempotency key: the same key again is refused before anything
/// else (`Duplicate`), on a product with and without shards, and moves nothing.
async fn a_used_key_refuses_a_second_adjustment_and_moves_nothing(store: Arc<dyn Store>) {
    let check = LowStockCheck { threshold: 0, alert: None };
    let admin = Uuid::now_v7();
    for shards in [1, 3] {
        let kettle = sharded(&format!("Kettle {shards}"), 10, shards);
        insert_products(&*store, &[&kettle]).await;
        let record = IdempotencyRecord {
            customer_id: admin,
            key: format!("delivery-{shards}"),
            request: "the first request".into(),
            status_code: 201,
            response: "{}".into(),
            expires_at: now() + Duration::hours(24),
        };
        for (delta, expected) in [
            (2, Ok(())),
            (2, Err(StoreError::Duplicate(UniqueKey::IdempotencyKey))),
            (-20, Err(StoreError::Duplicate(UniqueKey::IdempotencyKey))),
        ] {
            let adjustment = stock_adjustment(&kettle, delta);
            let write = AdjustmentWrite {
                adjustment: &adjustment,
                low_stock: &check,
                stock_shards: shards,
                idempotency: Some(&record),
            };
            let result = store.adjust_stock(write).await;
            assert_eq!(format!("{result:?}"), format!("{expected:?}"), "{shards} shard(s), {delta}");
        }
        let read = store.get_product(kettle.id).await.expect("get").expect("kettle");
        assert_eq!(read.stock, 12, "{shards} shard(s): moved once");
        let trail = store.list_adjustments(kettle.id, &PageRequest::first(10)).await.expect("trail");
        assert_eq!(trail.items.len(), 1, "{shards} shard(s)");
        assert_eq!(store.get_idempotency(admin, &record.key).await.expect("record"), Some(record));
    }
}

async fn sharded_stock_moves_by_adjustments_and_edits_without_losing_a_unit(store: Arc<dyn Store>) {
    let kettle = sharded("Kettle", 10, 3);
    insert_products(&*store, &[&kettle]).await;
    let check = LowStockCheck { threshold: 0, alert: None };
    let adjust = |delta: i64| {
        let (store, check) = (Arc::clone(&store), check.clone());
        let adjustment = stock_adjustment(&kettle, delta);
        async move {
            store
                .adjust_stock(AdjustmentWrite {
                    adjustment: &adjustment,
                    low_stock: &check,
                    stock_shards: 3,
                    idempotency: None,
                })
                .await
        }
    };
    adjust(5).await.expect("up");
    adjust(-15).await.expect("down to zero");
    assert!(matches!(adjust(-1).await, Err(StoreError::InsufficientStock(ids)) if ids == [kettle.id]));
    adjust(12).await.expect("refilled");
    assert_eq!(stock(&*store, &kettle).await, Some(12));

    // Reshard, reprice and set the stock by hand; an order between a read and an edit counts.
    let read = store.get_product(kettle.id).await.expect("get").expect("kettle");
    place(&*store, &order(Uuid::now_v7(), &[(&read, 2)])).await.expect("placed meanwhile");
    let fewer = next_version(&read, |p| {
        p.stock_shards = 2;
        p.stock += 3;
        p.price_cents = 1500;
        p.version += 1;
    });
    store.update_product(&read, &fewer, None).await.expect("edited");
    let now_read = store.get_product(kettle.id).await.expect("get").expect("kettle");
    assert_eq!((now_read.stock, now_read.stock_shards, now_read.price_cents), (13, 2, 1500));
    let stale_price = order(Uuid::now_v7(), &[(&read, 1)]);
    refused(&*store, &stale_price, StoreError::VersionConflict, place(&*store, &stale_price)).await;

    let one = next_version(&now_read, |p| {
        p.stock_shards = 1;
        p.version += 1;
    });
    store.update_product(&now_read, &one, None).await.expect("unsharded");
    assert_eq!(store.get_product(kettle.id).await.expect("get"), Some(one.clone()));
    let again = next_version(&one, |p| {
        p.stock_shards = 5;
        p.stock -= 4;
        p.version += 1;
    });
    store.update_product(&one, &again, None).await.expect("sharded again");
    assert_eq!(store.get_product(kettle.id).await.expect("get"), Some(again.clone()));

    // Writes made with the layout read before a reshard: each either applies in full or is
    // refused as a stale read, never adding or taking units no read counts.
    let two_more = stock_adjustment(&kettle, 2);
    let stale_layout = AdjustmentWrite { adjustment: &two_more, low_stock: &check, stock_shards: 1, idempotency: None };
    let expected = match store.adjust_stock(stale_layout).await {
        Ok(()) => 11,
        Err(StoreError::VersionConflict) => 9,
        Err(other) => panic!("unexpected {other:?}"),
    };
    assert_eq!(stock(&*store, &kettle).await, Some(expected));
    let stale_order = order(Uuid::now_v7(), &[(&again, 1)]);
    let expected = match store.insert_order(&placement(&stale_order)).await {
        Ok(_) => expected - 1,
        Err(StoreError::VersionConflict) => expected,
        Err(other) => panic!("unexpected {other:?}"),
    };
    assert_eq!(stock(&*store, &kettle).await, Some(expected));
    if expected != 9 {
        adjust(9 - expected).await.expect("back to 9");
    }
    place(&*store, &order(Uuid::now_v7(), &[(&again, 9)])).await.expect("the rest");
    assert_eq!(stock(&*store, &kettle).await, Some(0));

    let last = store.get_product(kettle.id).await.expect("get").expect("kettle");
    store.delete_product(&last).await.expect("delete");
    assert_eq!(store.get_product(kettle.id).await.expect("get"), None);
}

async fn transitions_check_the_version_and_move_the_counters(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let placed = order(Uuid::now_v7(), &[(&mug, 2)]);
    place(&*store, &placed).await.expect("placed");

    let declined = advance(&*store, &placed, Pending, None).await;
    assert_eq!(counters(&*store).await, (1, vec![(Pending, 1)], 0, 0), "same status, same counts");
    let stale = moved(&placed, Paid);
    refused(&*store, &placed, StoreError::VersionConflict, store.transition_order(&transition(&placed, &stale))).await;

    let paid = advance(&*store, &declined, Paid, None).await;
    assert_eq!(store.get_order(placed.id).await.expect("get"), Some(paid.clone()));
    assert_eq!(counters(&*store).await, (1, vec![(Paid, 1)], 0, 0));
    let shipped = advance(&*store, &paid, Shipped, None).await;
    let delivered = advance(&*store, &shipped, Delivered, None).await;
    assert_eq!(store.get_order(placed.id).await.expect("get"), Some(delivered));
    assert_eq!(counters(&*store).await, (1, vec![(Delivered, 1)], 1, 4 * 60), "placed to delivered: 4 minutes");
    assert_eq!(stock(&*store, &mug).await, Some(8), "no restock unless asked");
}

async fn racing_cancels_return_the_stock_exactly_once(store: Arc<dyn Store>) {
    let (mug, lamp) = (product("Mug", "kitchen", 1299, 10), product("Lamp", "lighting", 4500, 5));
    insert_products(&*store, &[&mug, &lamp]).await;
    let placed = order(Uuid::now_v7(), &[(&mug, 3), (&lamp, 5)]);
    place(&*store, &placed).await.expect("placed");
    let cancelled = moved(&placed, Cancelled);
    let mut racers = JoinSet::new();
    for _ in 0..10 {
        let (store, placed, cancelled) = (Arc::clone(&store), placed.clone(), cancelled.clone());
        racers.spawn(async move {
            store.transition_order(&TransitionWrite { restock: true, ..transition(&placed, &cancelled) }).await
        });
    }
    let (mut won, mut conflicts) = (0, 0);
    for result in racers.join_all().await {
        match result {
            Ok(()) => won += 1,
            Err(StoreError::VersionConflict) => conflicts += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 9));
    assert_eq!((stock(&*store, &mug).await, stock(&*store, &lamp).await), (Some(10), Some(5)));
    assert_eq!(counters(&*store).await, (1, vec![(Cancelled, 1)], 0, 0));
}

async fn a_restock_skips_products_deleted_since_the_order(store: Arc<dyn Store>) {
    let (mug, lamp) = (product("Mug", "kitchen", 1299, 10), product("Lamp", "lighting", 4500, 5));
    insert_products(&*store, &[&mug, &lamp]).await;
    let placed = order(Uuid::now_v7(), &[(&mug, 3), (&lamp, 1)]);
    place(&*store, &placed).await.expect("placed");
    let reserved = store.get_product(mug.id).await.expect("get").expect("mug");
    store.delete_product(&reserved).await.expect("delete");

    let cancelled = moved(&placed, Cancelled);
    store
        .transition_order(&TransitionWrite { restock: true, ..transition(&placed, &cancelled) })
        .await
        .expect("cancel");
    assert_eq!(stock(&*store, &mug).await, None, "not brought back to life");
    assert_eq!(stock(&*store, &lamp).await, Some(5));
    assert_eq!(store.get_order(placed.id).await.expect("get"), Some(cancelled));
}

/// An order placed, then given a pending payment under the key `KEY`.
struct Paying {
    placed: Order,
    paying: Order,
    payment: Payment,
    saved: IdempotencyRecord,
}

async fn paying(store: &dyn Store) -> Paying {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(store, &[&mug]).await;
    let placed = order(Uuid::now_v7(), &[(&mug, 1)]);
    place(store, &placed).await.expect("placed");
    let payment = payment(&placed, PaymentStatus::Pending);
    let saved = record(placed.customer_id, placed.created_at + Duration::hours(24), "the payment");
    let paying = moved(&placed, Pending);
    let write = TransitionWrite {
        payment: Some(PaymentChange::Insert(&payment)),
        idempotency: Some(&saved),
        ..transition(&placed, &paying)
    };
    store.transition_order(&write).await.expect("payment");
    Paying { placed, paying, payment, saved }
}

async fn payments_change_with_transitions_at_their_version(store: Arc<dyn Store>) {
    let Paying { placed, paying, payment: pending, saved } = paying(&*store).await;
    assert_eq!(store.get_payment(pending.id).await.expect("get"), Some(pending.clone()));
    assert_eq!(store.get_payment(Uuid::now_v7()).await.expect("get"), None);
    assert_eq!(store.get_idempotency(placed.customer_id, KEY).await.expect("get"), Some(saved.clone()));

    // The key is used; the same payment id cannot be inserted twice.
    let again = moved(&paying, Pending);
    let replay = TransitionWrite {
        payment: Some(PaymentChange::Insert(&pending)),
        idempotency: Some(&saved),
        ..transition(&paying, &again)
    };
    refused(&*store, &placed, StoreError::Duplicate(UniqueKey::IdempotencyKey), store.transition_order(&replay)).await;
    let twice = TransitionWrite { idempotency: None, ..replay };
    refused(&*store, &placed, StoreError::VersionConflict, store.transition_order(&twice)).await;

    // An update needs the payment's version as read.
    let succeeded = paid_as(&pending, PaymentStatus::Succeeded);
    let stale = next_version(&pending, |p| p.version = 0);
    let update = TransitionWrite {
        payment: Some(PaymentChange::Update { previous: &stale, updated: &succeeded }),
        ..transition(&paying, &again)
    };
    refused(&*store, &placed, StoreError::VersionConflict, store.transition_order(&update)).await;
    advance(&*store, &paying, Paid, Some(PaymentChange::Update { previous: &pending, updated: &succeeded })).await;
    assert_eq!(store.get_payment(pending.id).await.expect("get"), Some(succeeded));
    assert!(store.pending_refunds(10).await.expect("refunds").is_empty(), "only a refund is recorded");
}

async fn a_refund_stays_pending_until_confirmed(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let placed = order(Uuid::now_v7(), &[(&mug, 4)]);
    place(&*store, &placed).await.expect("placed");
    let succeeded = payment(&placed, PaymentStatus::Succeeded);
    let paid = advance(&*store, &placed, Paid, Some(PaymentChange::Insert(&succeeded))).await;

    let refunded = paid_as(&succeeded, PaymentStatus::Refunded);
    let cancelled = moved(&paid, Cancelled);
    let stale = next_version(&succeeded, |p| p.version = 0);
    let refund = |previous| TransitionWrite {
        restock: true,
        payment: Some(PaymentChange::Update { previous, updated: &refunded }),
        ..transition(&paid, &cancelled)
    };
    refused(&*store, &placed, StoreError::VersionConflict, store.transition_order(&refund(&stale))).await;
    store.transition_order(&refund(&succeeded)).await.expect("refund");
    assert_eq!(store.get_payment(succeeded.id).await.expect("get"), Some(refunded));
    assert_eq!(store.pending_refunds(10).await.expect("refunds"), [succeeded.id]);
    assert_eq!(stock(&*store, &mug).await, Some(10));
    assert_eq!(counters(&*store).await, (1, vec![(Cancelled, 1)], 0, 0));

    store.confirm_refund(succeeded.id).await.expect("confirm");
    assert!(store.pending_refunds(10).await.expect("refunds").is_empty());
    store.confirm_refund(succeeded.id).await.expect("a second confirmation is harmless");
    assert!(store.pending_refunds(10).await.expect("refunds").is_empty());
}

/// A pending refund put off goes behind the others, so one the gateway keeps refusing cannot
/// hold up the refunds after it; putting off one confirmed meanwhile does nothing.
async fn pending_refunds_are_tried_in_turn(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let mut refunds = Vec::new();
    for _ in 0..3 {
        let placed = order(Uuid::now_v7(), &[(&mug, 1)]);
        place(&*store, &placed).await.expect("placed");
        let succeeded = payment(&placed, PaymentStatus::Succeeded);
        let paid = advance(&*store, &placed, Paid, Some(PaymentChange::Insert(&succeeded))).await;
        let (refunded, cancelled) = (paid_as(&succeeded, PaymentStatus::Refunded), moved(&paid, Cancelled));
        let write = TransitionWrite {
            restock: true,
            payment: Some(PaymentChange::Update { previous: &succeeded, updated: &refunded }),
            ..transition(&paid, &cancelled)
        };
        store.transition_order(&write).await.expect("refund");
        refunds.push(succeeded.id);
    }
    refunds.sort();
    assert_eq!(store.pending_refunds(10).await.expect("refunds"), refunds);
    let [first, second, third] = refunds[..] else { panic!("three refunds") };
    store.postpone_refund(first, now() + Duration::minutes(5)).await.expect("postpone");
    store.postpone_refund(second, now() + Duration::minutes(1)).await.expect("postpone");
    assert_eq!(store.pending_refunds(10).await.expect("refunds"), [third, second, first]);
    assert_eq!(store.pending_refunds(1).await.expect("refunds"), [third], "the one not put off comes first");
    store.confirm_refund(second).await.expect("confirm");
    store.postpone_refund(second, now()).await.expect("putting off a confirmed refund is harmless");
    assert_eq!(store.pending_refunds(10).await.expect("refunds"), [third, first]);
}

async fn payments_list_newest_first_by_order_and_overall(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 10);
    insert_products(&*store, &[&mug]).await;
    let (mut ours, mut theirs) = (order(Uuid::now_v7(), &[(&mug, 1)]), order(Uuid::now_v7(), &[(&mug, 1)]));
    place(&*store, &ours).await.expect("ours");
    place(&*store, &theirs).await.expect("theirs");
    let mut made = Vec::new();
    for i in 0..5 {
        let target = if i % 2 == 0 { &mut ours } else { &mut theirs };
        let paid = payment(target, PaymentStatus::Failed);
        *target = advance(&*store, target, Pending, Some(PaymentChange::Insert(&paid))).await;
        made.push(paid);
    }
    made.reverse();
    let list = |order: Option<Uuid>| {
        let store = Arc::clone(&store);
        all_pages(2, move |p| {
            let store = Arc::clone(&store);
            async move { store.list_payments(&PaymentFilter { order, status: None }, &p).await }
        })
    };
    assert_eq!(list(None).await, made);
    let of_ours: Vec<Payment> = made.iter().filter(|p| p.order_id == ours.id).cloned().collect();
    assert_eq!(list(Some(ours.id)).await, of_ours);
    assert_eq!(of_ours.len(), 3);
    assert!(list(Some(Uuid::now_v7())).await.is_empty());
}

async fn orders_list_by_customer_and_status_and_come_due_oldest_first(store: Arc<dyn Store>) {
    let mug = product("Mug", "kitchen", 1299, 100);
    insert_products(&*store, &[&mug]).await;
    let (ada, bob, t) = (Uuid::now_v7(), Uuid::now_v7(), now());
    // Placed in this order, due in another: (customer, minutes until payment is due).
    let mut orders = Vec::new();
    for (customer, due_in) in [(ada, 30), (bob, 10), (ada, 20), (bob, 40), (ada, 5)] {
        let placed =
            next_version(&order(customer, &[(&mug, 1)]), |o| o.payment_due_at = Some(t + Duration::minutes(due_in)));
        place(&*store, &placed).await.expect("placed");
        orders.push(placed);
    }
    orders[3] = advance(&*store, &orders[3], Paid, None).await;
    let ids = |picked: &[usize]| picked.iter().map(|i| orders[*i].id).collect::<Vec<_>>();
    let list = |customer: Option<Uuid>, status: Option<OrderStatus>| {
        let store = Arc::clone(&store);
        async move {
            let filter = OrderFilter { customer, status, ..OrderFilter::default() };
            let listed = all_pages(2, |p| {
                let store = Arc::clone(&store);
                async move { store.list_orders(&filter, &p).await }
            })
            .await;
            listed.into_iter().map(|o| o.id).collect::<Vec<_>>()
        }
    };

    assert_eq!(list(None, None).await, ids(&[4, 3, 2, 1, 0]), "newest first");
    assert_eq!(list(Some(ada), None).await, ids(&[4, 2, 0]));
    assert_eq!(list(Some(bob), Some(Pending)).await, ids(&[1]));
    assert_eq!(list(None, Some(Pending)).await, ids(&[0, 2, 1, 4]), "latest due first");
    assert_eq!(list(None, Some(Paid)).await, ids(&[3]));
    assert!(list(None, Some(Cancelled)).await.is_empty());

    let due = |by: i64, limit| {
        let store = Arc::clone(&store);
        async move {
            let due = all_pages(limit, |p| {
                let store = Arc::clone(&store);
                async move { store.orders_due(Pending, t + Duration::minutes(by), &p).await }
            })
            .await;
            due.into_iter().map(|o| o.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(due(20, 10).await, ids(&[4, 1, 2]), "due at or before, oldest first");
    assert_eq!(due(20, 2).await, ids(&[4, 1, 2]), "a page at a time");
    assert!(due(0, 10).await.is_empty());

    // The sweep changes what it read before it reads on: an order leaving the status after its
    // page was read (here the page's last, which the token names) neither stops the next page
    // nor is met again.
    let (page_one, page_two) = (ids(&[4, 1]), ids(&[2, 0]));
    let first = store.orders_due(Pending, t + Duration::minutes(60), &PageRequest::first(2)).await.expect("due");
    assert_eq!(first.items.iter().map(|o| o.id).collect::<Vec<_>>(), page_one);
    advance(&*store, &orders[1], Paid, None).await;
    let next = PageRequest { limit: 2, token: first.next_token };
    let rest = store.orders_due(Pending, t + Duration::minutes(60), &next).await.expect("next page");
    assert_eq!(rest.items.iter().map(|o| o.id).collect::<Vec<_>>(), page_two);
    assert_eq!(rest.next_token, None);
}

async fn a_placement_reports_a_used_key_then_a_stale_read_then_short_stock(store: Arc<dyn Store>) {
    let (mug, lamp) = (product("Mug", "kitchen", 1299, 10), product("Lamp", "lighting", 4500, 1));
    insert_products(&*store, &[&mug, &lamp]).await;
    let customer = Uuid::now_v7();
    let first = order(customer, &[(&lamp, 1)]);
    let saved = record(customer, first.created_at + Duration::hours(24), "the first answer");
    store.insert_order(&NewOrderWrite { idempotency: Some(&saved), ..placement(&first) }).await.expect("first");
    let repriced = next_version(&mug, |p| {
        p.price_cents = 999;
        p.version = 2;
    });
    store.update_product(&mug, &repriced, None).await.expect("reprice");

    // Everything fails at once: the key is used, the cooldown and the mug's price moved, the mug
    // (at its old price) and the lamp are short.
    let late = order(customer, &[(&mug, 20), (&lamp, 1)]);
    let replay = record(customer, late.created_at + Duration::hours(24), "a second answer");
    let everything = NewOrderWrite { idempotency: Some(&replay), ..placement(&late) };
    let used = StoreError::Duplicate(UniqueKey::IdempotencyKey);
    refused(&*store, &late, used, store.insert_order(&everything)).await;
    let keyless = NewOrderWrite { idempotency: None, ..everything };
    refused(&*store, &late, StoreError::VersionConflict, store.insert_order(&keyless)).await;
    // With the cooldown as read, the mug's moved price still wins over both short lines.
    let cooldown = NewOrderWrite { expected_cooldown: Some(1), ..keyless };
    refused(&*store, &late, StoreError::VersionConflict, store.insert_order(&cooldown)).await;
    let current = order(customer, &[(&repriced, 20), (&lamp, 1)]);
    let fresh = NewOrderWrite { order: &current, ..cooldown };
    refused(&*store, &current, StoreError::InsufficientStock(vec![mug.id, lamp.id]), store.insert_order(&fresh)).await;
}

async fn a_transition_reports_a_used_key_then_a_stale_read(store: Arc<dyn Store>) {
    let Paying { placed, paying, payment: pending, saved } = paying(&*store).await;

    // A used key, a stale order and a stale payment at once: the key wins, then either version.
    let (succeeded, stale_payment) =
        (paid_as(&pending, PaymentStatus::Succeeded), next_version(&pending, |p| p.version = 0));
    let paid_late = moved(&placed, Paid);
    let stale = |previous, payment| TransitionWrite {
        payment: Some(PaymentChange::Update { previous: payment, updated: &succeeded }),
        idempotency: Some(&saved),
        ..transition(previous, &paid_late)
    };
    let used = StoreError::Duplicate(UniqueKey::IdempotencyKey);
    refused(&*store, &placed, used, store.transition_order(&stale(&placed, &stale_payment))).await;
    for (order, payment) in [(&placed, &stale_payment), (&placed, &pending), (&paying, &stale_payment)] {
        let write = TransitionWrite { idempotency: None, ..stale(order, payment) };
        refused(&*store, &placed, StoreError::VersionConflict, store.transition_order(&write)).await;
    }
}

on_every_store!(
    the_relay_finds_an_unclaimed_notice_behind_claimed_ones,
    a_notice_marked_sent_is_read_with_its_stamp_and_delivered_no_more,
    pending_refunds_are_tried_in_turn,
    a_used_key_refuses_a_second_adjustment_and_moves_nothing,
    an_order_saves_the_alert_of_the_line_that_crosses_and_refuses_a_stale_check,
    a_stale_low_stock_check_is_refused_or_settled_on_the_true_stock,
    placing_an_order_reserves_every_line_and_saves_it_with_its_cooldown_key_and_count,
    a_short_line_refuses_the_whole_order_naming_only_the_short_products,
    a_moved_price_or_a_deleted_product_is_a_version_conflict,
    a_catalog_edit_keeps_the_reservations_made_since_its_read,
    a_placement_needs_the_cooldown_as_it_was_read,
    leaving_unpaid_gives_back_the_hold_and_a_cancelled_slot,
    an_idempotency_key_holds_per_customer_until_it_expires,
    racing_orders_for_the_last_units_never_oversell,
    a_sharded_product_sells_exactly_its_stock,
    a_sharded_line_takes_from_several_shards_and_comes_back_on_a_cancel,
    sharded_stock_moves_by_adjustments_and_edits_without_losing_a_unit,
    transitions_check_the_version_and_move_the_counters,
    racing_cancels_return_the_stock_exactly_once,
    a_restock_skips_products_deleted_since_the_order,
    payments_change_with_transitions_at_their_version,
    a_refund_stays_pending_until_confirmed,
    payments_list_newest_first_by_order_and_overall,
    orders_list_by_customer_and_status_and_come_due_oldest_first,
    a_placement_reports_a_used_key_then_a_stale_read_then_short_stock,
    a_transition_reports_a_used_key_then_a_stale_read,
);
