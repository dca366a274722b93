/*
 * trie.c - the topic-pattern trie (see trie.h for the semantics).
 *
 * Layout. Besides the trie struct there are four arrays, each grown by
 * doubling, and no other allocation:
 *  - nodes: 64-byte nodes, one per cache line (the array is 64-byte aligned),
 *    referring to each other by 32-bit index; node 0 is the root, so index 0
 *    also means "no child". A literal node holds its own label when it is at
 *    most LABEL_INLINE bytes (nearly every real topic level), so checking a
 *    label costs no extra cache line. Nodes are appended in insertion order.
 *  - pool: the per-node open-addressing hash tables of literal children
 *    (linear probing, power-of-two capacity, load <= 3/4). A slot is the
 *    child's 32-bit label hash and index: eight per cache line, so a probe
 *    compares hashes in one line and reads a child node only on a hash hit,
 *    which is almost always the child it then descends into. A table that
 *    grows puts its old block on a free list for blocks of that size.
 *  - arena: the labels longer than LABEL_INLINE, by offset.
 *  - substs: the %u %c %v children of the few nodes that have any.
 * A "+" child is an index in the node. A trailing "#" or "+" is not a node:
 * "a/#" and "a/+" set a flag and a value on the node for "a", which halves
 * the nodes of a bulk load like "raw/<district>/<kind>/+".
 *
 * Cost. A match touches two cache lines per topic level (the parent's slot
 * and the child node), however many patterns there are; 100,000 patterns
 * "raw/district-N/kind-M/+" take about 10 MB.
 *
 * Insertion is two-phase so that running out of memory leaves the trie
 * unchanged: phase 1 makes every allocation the insert can need (raising the
 * capacity of an array is invisible to readers), phase 2 cannot fail.
 *
 * Matching is a depth-first search in specificity order (literal, %u, %c, %v,
 * "+", then "#"); the first complete match is the most specific one. It only
 * descends into existing children, so the recursion is at most the trie depth
 * (CMQ_TOPIC_MAX_LEVELS + 1 frames), and it allocates nothing. Covering is the
 * same search with the filter's "+" and "#" levels treated as wildcards.
 *
 * Thread: built by one thread; after that, any number of concurrent readers.
 */
#include "trie.h"

#include "hash.h"

#include "alloc.h"
#include "error.h"
#include "topic.h"

#include <string.h>

#define CMQ_STR_(x) #x
#define CMQ_STR(x)  CMQ_STR_(x)

/* Kinds of pattern level, in order of specificity. */
enum level_kind { LEVEL_LITERAL, LEVEL_USER, LEVEL_CLIENT, LEVEL_VENDOR, LEVEL_PLUS, LEVEL_HASH };

#define SUBST_INDEX(kind) ((unsigned)(kind)-LEVEL_USER) /* %u %c %v -> 0 1 2 */

#define NODE_VALUE 0x1u /* a pattern ends at this node */
#define NODE_HASH  0x2u /* the pattern "<this node>/#" exists */
#define NODE_PLUS  0x4u /* the pattern "<this node>/+" exists */

#define TABLE_MIN_LOG2 1u         /* smallest table: 2 slots (one child at load 1/2) */
#define TABLE_MAX_LOG2 31u        /* capacities stay below 2^32 */
#define POOL_NONE      UINT32_MAX /* end of a free list */
#define NODE_ALIGN     64u        /* cache line */
#define LABEL_INLINE   32u        /* labels up to this long live in the node */

struct slot {
	uint32_t hash;  /* label hash of the child; next free block while on a free list */
	uint32_t child; /* node index; 0 = empty slot */
};

struct node {
	uint32_t table;      /* pool offset of the literal-children table */
	uint32_t nlit;       /* number of literal children */
	uint8_t log2cap;     /* the table has 1 << log2cap slots; 0 = no table */
	uint8_t flags;       /* NODE_VALUE, NODE_HASH, NODE_PLUS */
	uint16_t label_len;  /* length of this node's label (literal nodes) */
	uint32_t plus;       /* "+" child, only if patterns continue below it; 0 = none */
	uint32_t subst;      /* 1 + index into substs; 0 = no %u %c %v child */
	uint32_t value;      /* value of the pattern ending here (NODE_VALUE) */
	uint32_t hash_value; /* value of "<here>/#" (NODE_HASH) */
	uint32_t plus_value; /* value of "<here>/+" (NODE_PLUS) */
	union {
		char bytes[LABEL_INLINE]; /* the label, if label_len <= LABEL_INLINE */
		uint32_t offset;          /* else its offset in the arena */
	} label;
};

_Static_assert(sizeof(struct node) == NODE_ALIGN, "one node per cache line");
_Static_assert(CMQ_TOPIC_MAX_LEN <= UINT16_MAX, "label_len is 16 bits");

struct subst_kids {
	uint32_t child[3]; /* %u %c %v children; 0 = none */
};

struct cmq_trie {
	struct node *nodes; /* NODE_ALIGN-aligned inside nodes_mem; nodes[0] is the root */
	char *nodes_mem;    /* the allocation (node_cap nodes + NODE_ALIGN bytes) */
	uint32_t nnodes;
	uint32_t node_cap;
	struct slot *pool; /* literal tables */
	uint32_t pool_len;
	uint32_t pool_cap;
	uint32_t free_block[TABLE_MAX_LOG2 + 1]; /* freed tables by log2 capacity */
	struct subst_kids *substs;
	uint32_t nsubsts;
	uint32_t subst_cap;
	char *arena; /* literal labels */
	uint32_t arena_len;
	uint32_t arena_cap;
	size_t count; /* patterns stored */
};

/* One parsed pattern level. */
struct plevel {
	const char *s;
	size_t len;
	enum level_kind kind;
	uint32_t hash; /* label hash (literals only) */
};

/* Hash of a level label (hash.h; unseeded, see there). */
static uint32_t label_hash(const char *s, size_t len)
{
	return cmq_hash(0, s, len);
}

static int invalid(const char **why, const char *text)
{
	if (why != NULL)
		*why = text;
	return CMQ_ERR_INVAL;
}

/* Classify one level of a pattern that already passed cmq_filter_check. */
static int classify(const char *s, size_t len, unsigned flags, enum level_kind *kind,
                    const char **why)
{
	const char *pct;

	*kind = LEVEL_LITERAL;
	if (len == 1 && s[0] == '+') {
		*kind = LEVEL_PLUS;
		return CMQ_OK;
	}
	if (len == 1 && s[0] == '#') {
		*kind = LEVEL_HASH;
		return CMQ_OK;
	}
	pct = len > 0 ? memchr(s, '%', len) : NULL;
	if (pct == NULL)
		return CMQ_OK;
	/* '%' is reserved: a level containing it must be exactly %u, %c or %v. */
	if (len == 2 && pct == s && (s[1] == 'u' || s[1] == 'c' || s[1] == 'v')) {
		if (!(flags & CMQ_PATTERN_ALLOW_SUBST))
			return invalid(why,
			               "uses a substitution (%u, %c, %v) where none is allowed");
		*kind = s[1] == 'u' ? LEVEL_USER : s[1] == 'c' ? LEVEL_CLIENT : LEVEL_VENDOR;
		return CMQ_OK;
	}
	if (len == 2 && pct == s)
		return invalid(why, "uses an unknown substitution (only %u, %c and %v exist)");
	for (const char *p = pct; p + 1 < s + len; p++) {
		if (p[0] != '%')
			continue;
		if (p[1] == 'u')
			return invalid(why, "'%u' must fill a whole level");
		if (p[1] == 'c')
			return invalid(why, "'%c' must fill a whole level");
		if (p[1] == 'v')
			return invalid(why, "'%v' must fill a whole level");
	}
	return invalid(why, "contains '%' outside a whole-level substitution %u, %c or %v");
}

/* Validate and split a pattern into levels[0..*n). */
static int parse_pattern(const char *pattern, size_t len, unsigned flags, struct plevel *levels,
                         size_t *n, const char **why)
{
	struct cmq_level it;
	size_t depth = 0;
	int rc;

	*n = 0;
	if (why != NULL)
		*why = NULL;
	if (flags & ~CMQ_PATTERN_ALLOW_SUBST)
		return invalid(why, "was given unknown flags");
	if (!cmq_filter_check(pattern, len, why))
		return CMQ_ERR_INVAL;
	cmq_level_first(&it, pattern, len);
	do {
		struct plevel *lv;

		if (depth == CMQ_TOPIC_MAX_LEVELS)
			return invalid(why,
			               "has more than " CMQ_STR(CMQ_TOPIC_MAX_LEVELS) " levels");
		lv = &levels[depth];
		rc = classify(it.s, it.len, flags, &lv->kind, why);
		if (rc != CMQ_OK)
			return rc;
		lv->s = it.s;
		lv->len = it.len;
		lv->hash = lv->kind == LEVEL_LITERAL ? label_hash(it.s, it.len) : 0;
		depth++;
	} while (cmq_level_next(&it));
	*n = depth;
	return CMQ_OK;
}

int cmq_pattern_check(const char *pattern, size_t len, unsigned flags, const char **why)
{
	struct plevel levels[CMQ_TOPIC_MAX_LEVELS];
	size_t n;

	return parse_pattern(pattern, len, flags, levels, &n, why);
}

/* Capacity for `want` elements: doubling from cap, at least min, at most UINT32_MAX. */
static size_t grown(size_t cap, size_t want, size_t min)
{
	size_t c = cap < min ? min : cap;

	while (c < want)
		c = c > SIZE_MAX / 2 ? want : c * 2;
	return c > UINT32_MAX ? UINT32_MAX : c;
}

static size_t align_shift(const char *p)
{
	return (NODE_ALIGN - (size_t)((uintptr_t)p % NODE_ALIGN)) % NODE_ALIGN;
}

/* Make room for `want` nodes; the nodes keep their indices and contents. */
static int reserve_nodes(struct cmq_trie *t, size_t want)
{
	size_t cap, old_shift, new_shift;
	char *mem;

	if (want <= t->node_cap)
		return CMQ_OK;
	if (want > UINT32_MAX)
		return CMQ_ERR_NOMEM; /* node indices are 32 bits */
	cap = grown(t->node_cap, want, 16);
	if (cap > (SIZE_MAX - NODE_ALIGN) / sizeof(struct node))
		return CMQ_ERR_NOMEM;
	old_shift = t->nodes_mem != NULL ? (size_t)((char *)t->nodes - t->nodes_mem) : 0;
	mem = cmq_realloc(t->nodes_mem, cap * sizeof(struct node) + NODE_ALIGN);
	if (mem == NULL)
		return CMQ_ERR_NOMEM;
	/* realloc keeps the bytes but not the alignment: slide them to a line boundary. */
	new_shift = align_shift(mem);
	if (new_shift != old_shift && t->nnodes > 0)
		memmove(mem + new_shift, mem + old_shift, (size_t)t->nnodes * sizeof(struct node));
	t->nodes_mem = mem;
	t->nodes = (struct node *)(void *)(mem + new_shift);
	t->node_cap = (uint32_t)cap;
	return CMQ_OK;
}

static int reserve_arena(struct cmq_trie *t, size_t want)
{
	char *p;
	size_t cap;

	if (want <= t->arena_cap)
		return CMQ_OK;
	if (want > UINT32_MAX)
		return CMQ_ERR_NOMEM; /* arena offsets are 32 bits */
	cap = grown(t->arena_cap, want, 256);
	p = cmq_realloc(t->arena, cap);
	if (p == NULL)
		return CMQ_ERR_NOMEM;
	t->arena = p;
	t->arena_cap = (uint32_t)cap;
	return CMQ_OK;
}

static int reserve_pool(struct cmq_trie *t, size_t want)
{
	struct slot *p;
	size_t cap;

	if (want <= t->pool_cap)
		return CMQ_OK;
	if (want > UINT32_MAX)
		return CMQ_ERR_NOMEM; /* pool offsets are 32 bits */
	cap = grown(t->pool_cap, want, 64);
	p = cmq_reallocarray(t->pool, cap, sizeof(*p));
	if (p == NULL)
		return CMQ_ERR_NOMEM;
	t->pool = p;
	t->pool_cap = (uint32_t)cap;
	return CMQ_OK;
}

static int reserve_substs(struct cmq_trie *t, size_t want)
{
	struct subst_kids *p;
	size_t cap;

	if (want <= t->subst_cap)
		return CMQ_OK;
	if (want >= UINT32_MAX)
		return CMQ_ERR_NOMEM; /* stored as 1 + index */
	cap = grown(t->subst_cap, want, 8);
	if (cap == UINT32_MAX)
		cap--;
	p = cmq_reallocarray(t->substs, cap, sizeof(*p));
	if (p == NULL)
		return CMQ_ERR_NOMEM;
	t->substs = p;
	t->subst_cap = (uint32_t)cap;
	return CMQ_OK;
}

int cmq_trie_new(struct cmq_trie **out)
{
	struct cmq_trie *t;

	*out = NULL;
	t = cmq_calloc(1, sizeof(*t));
	if (t == NULL)
		return CMQ_ERR_NOMEM;
	for (unsigned i = 0; i <= TABLE_MAX_LOG2; i++)
		t->free_block[i] = POOL_NONE;
	if (reserve_nodes(t, 16) != CMQ_OK) {
		cmq_free(t);
		return CMQ_ERR_NOMEM;
	}
	memset(&t->nodes[0], 0, sizeof(t->nodes[0])); /* the root */
	t->nnodes = 1;
	*out = t;
	return CMQ_OK;
}

void cmq_trie_free(struct cmq_trie *t)
{
	if (t == NULL)
		return;
	cmq_free(t->nodes_mem);
	cmq_free(t->pool);
	cmq_free(t->substs);
	cmq_free(t->arena);
	cmq_free(t);
}

static const char *node_label(const struct cmq_trie *t, const struct node *n)
{
	return n->label_len <= LABEL_INLINE ? n->label.bytes : t->arena + n->label.offset;
}

/* Literal child of n (which has literal children) labelled s[0..len) with hash h, or 0. */
static uint32_t find_literal(const struct cmq_trie *t, const struct node *n, const char *s,
                             size_t len, uint32_t h)
{
	const struct slot *tab = t->pool + n->table;
	uint32_t mask = ((uint32_t)1 << n->log2cap) - 1;
	uint32_t i = h & mask;

	for (uint32_t probes = 0; probes <= mask; probes++, i = (i + 1) & mask) {
		const struct node *c;

		if (tab[i].child == 0)
			return 0;
		if (tab[i].hash != h)
			continue;
		c = &t->nodes[tab[i].child];
		if (c->label_len == len && memcmp(node_label(t, c), s, len) == 0)
			return tab[i].child;
	}
	return 0;
}

/* Put a slot into a table known to have a free slot. */
static void table_put(struct slot *tab, uint32_t mask, const struct slot *sl)
{
	uint32_t i = sl->hash & mask;

	while (tab[i].child != 0)
		i = (i + 1) & mask;
	tab[i] = *sl;
}

/* log2 capacity node n's table needs before one more literal child; 0 if it has room. */
static unsigned table_need(const struct node *n)
{
	uint64_t cap = (uint64_t)1 << n->log2cap;

	if (n->log2cap == 0)
		return TABLE_MIN_LOG2;
	if ((uint64_t)(n->nlit + 1) * 4 <= cap * 3)
		return 0;
	return n->log2cap + 1u;
}

/* A zeroed table of 1 << log2cap slots; the pool has been reserved (phase 2). */
static uint32_t table_take(struct cmq_trie *t, unsigned log2cap)
{
	uint32_t off = t->free_block[log2cap];
	uint32_t cap = (uint32_t)1 << log2cap;

	if (off != POOL_NONE) {
		t->free_block[log2cap] = t->pool[off].hash;
	} else {
		off = t->pool_len;
		t->pool_len += cap;
	}
	memset(&t->pool[off], 0, cap * sizeof(struct slot));
	return off;
}

/* Move n's literal children into a table of 1 << log2cap slots (phase 2). */
static void table_grow(struct cmq_trie *t, struct node *n, unsigned log2cap)
{
	uint32_t off = table_take(t, log2cap);
	uint32_t mask = ((uint32_t)1 << log2cap) - 1;

	if (n->log2cap != 0) {
		uint32_t old_cap = (uint32_t)1 << n->log2cap;

		for (uint32_t i = 0; i < old_cap; i++) {
			const struct slot *sl = &t->pool[n->table + i];

			if (sl->child != 0)
				table_put(t->pool + off, mask, sl);
		}
		t->pool[n->table].hash = t->free_block[n->log2cap];
		t->free_block[n->log2cap] = n->table;
	}
	n->table = off;
	n->log2cap = (uint8_t)log2cap;
}

/* Existing child of node idx for a path level (never LEVEL_HASH), or 0. */
static uint32_t child_for(const struct cmq_trie *t, uint32_t idx, const struct plevel *lv)
{
	const struct node *n = &t->nodes[idx];

	switch (lv->kind) {
	case LEVEL_LITERAL:
		return n->nlit != 0 ? find_literal(t, n, lv->s, lv->len, lv->hash) : 0;
	case LEVEL_PLUS:
		return n->plus;
	default:
		return n->subst != 0 ? t->substs[n->subst - 1].child[SUBST_INDEX(lv->kind)] : 0;
	}
}

/*
 * Phase 1 of an insert that adds nodes for levels[i..path) below node idx:
 * reserve room in every array, so that phase 2 cannot fail.
 */
static int insert_reserve(struct cmq_trie *t, uint32_t idx, const struct plevel *levels, size_t i,
                          size_t path)
{
	size_t bytes = 0, slots = 0, substs = 0;
	int rc;

	for (size_t j = i; j < path; j++) {
		const struct plevel *lv = &levels[j];
		bool new_parent = j > i;

		if (lv->kind == LEVEL_LITERAL) {
			bytes += lv->len > LABEL_INLINE ? lv->len : 0;
			if (new_parent) {
				slots += (size_t)1 << TABLE_MIN_LOG2;
			} else {
				unsigned need = table_need(&t->nodes[idx]);

				if (need > TABLE_MAX_LOG2)
					return CMQ_ERR_NOMEM;
				slots += need != 0 ? (size_t)1 << need : 0;
			}
		} else if (lv->kind != LEVEL_PLUS && (new_parent || t->nodes[idx].subst == 0)) {
			substs++;
		}
	}
	rc = reserve_nodes(t, (size_t)t->nnodes + (path - i));
	if (rc == CMQ_OK)
		rc = reserve_arena(t, (size_t)t->arena_len + bytes);
	if (rc == CMQ_OK)
		rc = reserve_pool(t, (size_t)t->pool_len + slots);
	if (rc == CMQ_OK)
		rc = reserve_substs(t, (size_t)t->nsubsts + substs);
	return rc;
}

/* Phase 2: add a child of node parent for level lv; room is reserved. */
static uint32_t add_child(struct cmq_trie *t, uint32_t parent, const struct plevel *lv)
{
	uint32_t c = t->nnodes++;
	struct node *child = &t->nodes[c];
	struct node *p = &t->nodes[parent];

	memset(child, 0, sizeof(*child));
	if (lv->kind == LEVEL_LITERAL) {
		unsigned need = table_need(p);
		struct slot sl = {lv->hash, c};

		if (need != 0)
			table_grow(t, p, need);
		child->label_len = (uint16_t)lv->len;
		if (lv->len <= LABEL_INLINE) {
			if (lv->len > 0)
				memcpy(child->label.bytes, lv->s, lv->len);
		} else {
			child->label.offset = t->arena_len;
			memcpy(t->arena + t->arena_len, lv->s, lv->len);
			t->arena_len += (uint32_t)lv->len;
		}
		table_put(t->pool + p->table, ((uint32_t)1 << p->log2cap) - 1, &sl);
		p->nlit++;
	} else if (lv->kind == LEVEL_PLUS) {
		p->plus = c;
	} else {
		if (p->subst == 0) {
			memset(&t->substs[t->nsubsts], 0, sizeof(t->substs[0]));
			p->subst = ++t->nsubsts;
		}
		t->substs[p->subst - 1].child[SUBST_INDEX(lv->kind)] = c;
	}
	return c;
}

/* Where node n keeps the value for terminal flag bit. */
static uint32_t *terminal(struct node *n, unsigned bit)
{
	return bit == NODE_HASH ? &n->hash_value : bit == NODE_PLUS ? &n->plus_value : &n->value;
}

int cmq_trie_insert(struct cmq_trie *t, const char *pattern, size_t len, unsigned flags,
                    uint32_t value, const char **why, uint32_t *existing)
{
	struct plevel levels[CMQ_TOPIC_MAX_LEVELS];
	size_t n, path, i;
	uint32_t idx = 0;
	unsigned bit;
	int rc;

	if (why != NULL)
		*why = NULL;
	if (t == NULL)
		return invalid(why, "was given no trie");
	rc = parse_pattern(pattern, len, flags, levels, &n, why);
	if (rc != CMQ_OK)
		return rc;
	/* A final "#" or "+" is a flag on the node before it, not a node of its own. */
	switch (levels[n - 1].kind) {
	case LEVEL_HASH:
		bit = NODE_HASH;
		path = n - 1;
		break;
	case LEVEL_PLUS:
		bit = NODE_PLUS;
		path = n - 1;
		break;
	default:
		bit = NODE_VALUE;
		path = n;
		break;
	}

	/* Follow the part of the path that exists. */
	for (i = 0; i < path; i++) {
		uint32_t c = child_for(t, idx, &levels[i]);

		if (c == 0)
			break;
		idx = c;
	}
	if (i == path && (t->nodes[idx].flags & bit)) {
		if (existing != NULL)
			*existing = *terminal(&t->nodes[idx], bit);
		return CMQ_ERR_EXISTS;
	}
	if (i < path) {
		rc = insert_reserve(t, idx, levels, i, path);
		if (rc != CMQ_OK)
			return rc;
	}
	/* Phase 2: nothing below can fail. */
	for (; i < path; i++)
		idx = add_child(t, idx, &levels[i]);
	*terminal(&t->nodes[idx], bit) = value;
	t->nodes[idx].flags |= (uint8_t)bit;
	t->count++;
	return CMQ_OK;
}

/*
 * Whether identity value v fills the level s[0..len). A value that
 * cmq_identity_check refuses (empty, too long, containing '+' '#' '/' or a
 * control character, invalid UTF-8) never matches, whatever the caller did.
 */
static bool subst_fills(const struct cmq_subst *sub, unsigned which, const char *s, size_t len)
{
	const char *v;
	size_t vlen;

	if (sub == NULL)
		return false;
	switch (which) {
	case 0:
		v = sub->username;
		vlen = sub->username_len;
		break;
	case 1:
		v = sub->client_id;
		vlen = sub->client_id_len;
		break;
	default:
		v = sub->vendor;
		vlen = sub->vendor_len;
		break;
	}
	if (v == NULL || vlen == 0 || vlen != len || memcmp(v, s, len) != 0)
		return false;
	return cmq_identity_check(v, vlen, NULL);
}

/* The value a node yields when the topic (or filter) ends at it. */
static bool end_at(const struct node *n, uint32_t *value)
{
	/* The exact pattern is more specific than "<here>/#". */
	if (n->flags & NODE_VALUE) {
		*value = n->value;
		return true;
	}
	if (n->flags & NODE_HASH) {
		*value = n->hash_value;
		return true;
	}
	return false;
}

/* "<here>/#", which takes any remaining levels. */
static bool below_hash(const struct node *n, uint32_t *value)
{
	if (n->flags & NODE_HASH) {
		*value = n->hash_value;
		return true;
	}
	return false;
}

static bool walk_plus(const struct cmq_trie *t, const struct node *n, const char *next,
                      const char *end, unsigned depth, bool filter, const struct cmq_subst *sub,
                      uint32_t *value);

/*
 * The depth-first search behind matching and covering: the levels from s (up
 * to end) below node idx; s == NULL means the topic or filter is used up;
 * depth counts the levels consumed. With filter set, whole levels "+" and "#"
 * are the filter's wildcards (covering); otherwise they are ordinary text.
 */
static bool walk(const struct cmq_trie *t, uint32_t idx, const char *s, const char *end,
                 unsigned depth, bool filter, const struct cmq_subst *sub, uint32_t *value)
{
	const struct node *n = &t->nodes[idx];
	const char *slash, *next;
	size_t len;
	uint32_t c;

	if (s == NULL)
		return end_at(n, value);
	slash = s < end ? memchr(s, '/', (size_t)(end - s)) : NULL;
	len = slash != NULL ? (size_t)(slash - s) : (size_t)(end - s);
	next = slash != NULL ? slash + 1 : NULL;

	if (filter && len == 1 && (s[0] == '#' || s[0] == '+')) {
		/* A filter "#" is covered only by "#"; a filter "+" by "+" or "#". */
		if (s[0] == '+' && walk_plus(t, n, next, end, depth, filter, sub, value))
			return true;
		return below_hash(n, value);
	}
	if (n->nlit != 0) {
		c = find_literal(t, n, s, len, label_hash(s, len));
		if (c != 0 && walk(t, c, next, end, depth + 1, filter, sub, value))
			return true;
	}
	/* MQTT: first-level wildcards never match a topic starting with '$'. */
	if (depth == 0 && len > 0 && s[0] == '$')
		return false;
	if (n->subst != 0) {
		const struct subst_kids *k = &t->substs[n->subst - 1];

		for (unsigned w = 0; w < 3; w++) {
			c = k->child[w];
			if (c != 0 && subst_fills(sub, w, s, len) &&
			    walk(t, c, next, end, depth + 1, filter, sub, value))
				return true;
		}
	}
	if (walk_plus(t, n, next, end, depth, filter, sub, value))
		return true;
	return below_hash(n, value);
}

/* The "+" edge of node n for a level followed by next (NULL: it was the last level). */
static bool walk_plus(const struct cmq_trie *t, const struct node *n, const char *next,
                      const char *end, unsigned depth, bool filter, const struct cmq_subst *sub,
                      uint32_t *value)
{
	if (next == NULL && (n->flags & NODE_PLUS)) {
		*value = n->plus_value; /* "<here>/+" beats "<here>/+/#" */
		return true;
	}
	return n->plus != 0 && walk(t, n->plus, next, end, depth + 1, filter, sub, value);
}

bool cmq_trie_match(const struct cmq_trie *t, const char *topic, size_t len,
                    const struct cmq_subst *s, uint32_t *value)
{
	uint32_t v;

	if (t == NULL || topic == NULL || len == 0 || len > CMQ_TOPIC_MAX_LEN)
		return false;
	if (!walk(t, 0, topic, topic + len, 0, false, s, &v))
		return false;
	*value = v;
	return true;
}

bool cmq_trie_covers(const struct cmq_trie *t, const char *filter, size_t len,
                     const struct cmq_subst *s, uint32_t *value)
{
	uint32_t v;

	if (t == NULL || !cmq_filter_check(filter, len, NULL))
		return false;
	if (!walk(t, 0, filter, filter + len, 0, true, s, &v))
		return false;
	if (value != NULL)
		*value = v;
	return true;
}

size_t cmq_trie_count(const struct cmq_trie *t)
{
	return t != NULL ? t->count : 0;
}

size_t cmq_trie_memory(const struct cmq_trie *t)
{
	if (t == NULL)
		return 0;
	return sizeof(*t) + (size_t)t->node_cap * sizeof(struct node) + NODE_ALIGN +
	       (size_t)t->pool_cap * sizeof(struct slot) +
	       (size_t)t->subst_cap * sizeof(struct subst_kids) + t->arena_cap;
}
