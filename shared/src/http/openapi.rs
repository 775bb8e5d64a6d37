//! The OpenAPI 3.1 document, generated from the handlers' `utoipa::path` attributes and the
//! types' schemas: one source of truth, checked in as `docs/openapi.json` (a test fails when
//! they differ), which `http::docs` serves.

use utoipa::openapi::Required;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, customers, orders, payments, products};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orderly",
        description = "A retailer's order service: customers sign up, browse the catalog, place orders \
                       and pay; the back office manages orders, inventory, payments and alerts. Errors are \
                       RFC 9457 problem documents.",
        license(name = "MIT")
    ),
    paths(
        auth::login, auth::change_password, auth::request_password_reset, auth::reset_password, auth::logout,
        auth::logout_everywhere,
        customers::sign_up, customers::list, customers::show, customers::update, customers::notifications,
        products::create, products::list, products::show, products::update, products::replace, products::remove,
        products::categories,
        orders::place, orders::list, orders::show, orders::tracking, orders::label, orders::fulfill, orders::status,
        orders::change_status, orders::cancel, orders::metrics,
        payments::pay, payments::show, payments::list,
        admin::dashboard, admin::asset, admin::metrics, admin::orders, admin::order, admin::amend_order,
        admin::inventory, admin::inventory_item, admin::create_product, admin::replace_product,
        admin::delete_product, admin::adjustments, admin::adjust, admin::payments, admin::customers, admin::alerts,
        admin::acknowledge,
        super::docs::openapi_json,
    ),
    components(schemas(super::problem::Problem, crate::model::FieldError)),
    modifiers(&DocsPage, &BearerAuth, &CommonAnswers, &OperationIds, &Links),
    tags(
        (name = "auth", description = "Logging in and out, changing or resetting a password"),
        (name = "customers", description = "Sign-up, customer records, notices"),
        (name = "products", description = "The catalog"),
        (name = "orders", description = "Placing, reading, cancelling and moving orders"),
        (name = "payments", description = "Card payments"),
        (name = "admin", description = "The back office"),
        (name = "docs", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The document as served and checked in.
pub fn document() -> Document {
    ApiDoc::openapi()
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some("POST /auth/login answers the access token".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// What any route may answer besides its own: problem documents for a malformed request, a
/// bad token, oversized parts, and a busy or failing service.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut Document) {
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                // `security((), ("bearer" = []))`: a token is optional, but one sent must be good.
                let token_optional = operation.security.as_ref().is_some_and(|s| {
                    s.iter()
                        .any(|requirement| serde_json::to_value(requirement).is_ok_and(|v| v == serde_json::json!({})))
                });
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| problem(description).into());
                };
                add("400", "Malformed JSON, query or If-Match");
                if token_optional {
                    add("401", "A token invalid, expired or revoked (this route needs none)");
                } else if authenticated {
                    add("401", "No token, or a token invalid, expired or revoked");
                }
                add("404", "No such route");
                add("405", "Method not allowed on this route");
                add("414", "URI over 8 KiB");
                add("422", "Invalid fields: errors names each");
                add("431", "Too many or too large headers");
                add("500", "Internal error (details are logged, never sent)");
                add("503", "Busy: retry shortly (Retry-After)");
                if has_body {
                    add("413", "Body over 64 KiB");
                    add("415", "Body is not application/json");
                }
            }
        }
    }
}

/// Operation ids are the handlers' names, which repeat across functions (`list`, `show`):
/// prefixed with the operation's tag (`orders.list`), they are unique.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut Document) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
                if let Some(id) = operation.operation_id.as_mut()
                    && !id.contains('.')
                {
                    *id = format!("{tag}.{id}");
                }
            }
        }
    }
}

/// Links from what a creation answers to what can be done with it next (the created item's
/// `id` into every operation on `<collection>/{id}` and its sub-resources), so clients and
/// Schemathesis's stateful phase can follow them.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut Document) {
        let mut targets: Vec<(String, String)> = Vec::new(); // (collection, operation id)
        for (path, item) in &openapi.paths.paths {
            let Some((collection, _)) = path.split_once("/{id}") else { continue };
            let operations = [&item.get, &item.put, &item.post, &item.delete, &item.patch];
            for operation in operations.into_iter().flatten() {
                if let Some(id) = &operation.operation_id {
                    targets.push((collection.to_owned(), id.clone()));
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(post) = item.post.as_mut() else { continue };
            for (status, response) in post.responses.responses.iter_mut() {
                let utoipa::openapi::RefOr::T(response) = response else { continue };
                if !matches!(status.as_str(), "201" | "202") {
                    continue;
                }
                for (collection, operation_id) in targets.iter().filter(|(c, _)| c == path) {
                    let link = LinkBuilder::new()
                        .operation_id(operation_id.clone())
                        .parameter("id", "$response.body#/id")
                        .description(format!("The created item, by its id, in {collection}/{{id}}"))
                        .build();
                    response.links.insert(operation_id.replace('.', "_"), link.into());
                }
            }
        }
    }
}

/// `GET /docs`, served by swagger-ui-dist's routes (not a handler of ours): described here.
struct DocsPage;

impl Modify for DocsPage {
    fn modify(&self, openapi: &mut Document) {
        let page = ResponseBuilder::new()
            .description("Swagger UI over /openapi.json; its script and style are served from this binary")
            .content("text/html", ContentBuilder::new().build())
            .build();
        let operation = OperationBuilder::new()
            .tag("docs")
            .summary(Some("Interactive docs (works offline)"))
            .operation_id(Some("docs"))
            .response("200", page)
            .security(SecurityRequirement::default())
            .build();
        openapi.paths.add_path_operation("/docs", vec![HttpMethod::Get], operation);

        let file = ParameterBuilder::new()
            .name("file")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("swagger-ui-bundle.js, swagger-ui.css, their .map files, oauth2-redirect.html or .js"))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        let asset = ResponseBuilder::new().description("The docs page's script, style or source map").build();
        let missing = ResponseBuilder::new().description("No such file").build();
        let operation = OperationBuilder::new()
            .tag("docs")
            .summary(Some("The docs page's files"))
            .operation_id(Some("docs.file"))
            .parameter(file)
            .response("200", asset)
            .response("404", missing)
            .security(SecurityRequirement::default())
            .build();
        openapi.paths.add_path_operation("/docs/{file}", vec![HttpMethod::Get], operation);
    }
}
