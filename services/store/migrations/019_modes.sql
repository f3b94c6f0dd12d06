-- The mode per product (issue 16): which mode decided each case and where it came from, the
-- per-product override a finance lead set with the weekly review's button, and every change
-- of it. Portable: natural keys, TEXT/INTEGER columns, plain indexes.

-- the mode a case was opened and decided in: its product (the sku, or item id, of its main
-- line), the mode, and where the mode came from ("override", "product", "policy", "global")
CREATE TABLE case_modes (
    case_id     INTEGER PRIMARY KEY REFERENCES cases (id),
    product     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    source      TEXT NOT NULL,
    policy_id   TEXT,
    opened_at   TEXT NOT NULL
);
CREATE INDEX case_modes_product ON case_modes (product, opened_at);

-- the stored override, one row a product: it wins over the policy file and MODE
CREATE TABLE product_modes (
    product     TEXT PRIMARY KEY,
    mode        TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    why         TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);

-- every change of a product's mode: the offer it answered (its key: product, from, to and the
-- review's week), so two clicks on one offer make one change
CREATE TABLE mode_changes (
    offer_key   TEXT PRIMARY KEY,
    product     TEXT NOT NULL,
    from_mode   TEXT NOT NULL,
    to_mode     TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    why         TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);
CREATE INDEX mode_changes_product ON mode_changes (product, changed_at);

-- a person's decisions over a window (the agreement figures, the weekly review)
CREATE INDEX decisions_decided ON decisions (decided_at);
