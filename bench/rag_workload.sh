# shellcheck shell=bash
# bench/rag_workload.sh -- the RAG-shaped schema and workload of issue 15, sourced by
# bench-dedup.sh and bench-chunk-size.sh. The caller defines sql SQL (runs one statement
# on the benchmark's cluster, ON_ERROR_STOP; returns its status) and sets SCALE.
#   users: 200 per scale unit, occasional updates;
#   documents: text + jsonb metadata, ~1.5 kB each, 2000 per scale unit;
#   search_history: append only, 10000 per scale unit.
rag_schema() { # the tables and the users
    sql "create table users (id serial primary key, name text, email text, settings jsonb,
         updated_at timestamptz default now());
     create table documents (id bigserial primary key, owner int references users,
         title text, body text, metadata jsonb, created_at timestamptz default now());
     create table search_history (id bigserial primary key, user_id int, query text,
         results jsonb, at timestamptz default now());
     insert into users (name, email, settings)
         select 'user ' || g, 'u' || g || '@example.com', jsonb_build_object('lang', 'en', 'k', g)
         from generate_series(1, 200 * $SCALE) g;"
}
rag_docs() { # rag_docs N: N new documents
    sql "insert into documents (owner, title, body, metadata)
         select 1 + (random() * (200 * $SCALE - 1))::int, 'doc ' || g,
                repeat(md5(random()::text) || ' ', 45),
                jsonb_build_object('source', 'upload', 'tags', jsonb_build_array('a', 'b'), 'n', g)
         from generate_series(1, $1) g"
}
rag_searches() { # rag_searches N: N new search_history rows
    sql "insert into search_history (user_id, query, results)
         select 1 + (random() * (200 * $SCALE - 1))::int, 'query ' || md5(random()::text),
                jsonb_build_array(g, g + 1, g + 2)
         from generate_series(1, $1) g"
}
rag_fill() { # the initial rows (after rag_schema)
    rag_docs $((2000 * SCALE)) >/dev/null && rag_searches $((10000 * SCALE)) >/dev/null
}
# rag_writes: workload 1, a day's writes: documents 2 % more rows, search_history 5 %
# more, updates of 1 % of users and of 0.2 % of documents' metadata. Prints which step
# failed (on stderr) and returns 1 on failure.
rag_writes() {
    rag_docs $((2000 * SCALE / 50)) >/dev/null || { echo "rag workload: documents failed" >&2; return 1; }
    rag_searches $((10000 * SCALE / 20)) >/dev/null || { echo "rag workload: searches failed" >&2; return 1; }
    sql "update users set settings = settings || '{\"seen\": true}', updated_at = now()
         where id % 100 = 0" >/dev/null || { echo "rag workload: users failed" >&2; return 1; }
    sql "update documents set metadata = metadata || '{\"reviewed\": true}'
         where id % 500 = 0" >/dev/null || { echo "rag workload: metadata failed" >&2; return 1; }
}
