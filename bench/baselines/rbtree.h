/* SPDX-License-Identifier: MIT */
/*
 * A small intrusive red-black tree keyed by a 64-bit key, for the
 * rbtree-mutex baseline. The classic algorithm (Cormen et al., ch. 13)
 * with one sentinel per tree, as libfabric's ofi_rbmap has. Not
 * thread-safe: the caller serialises every call.
 */
#ifndef MRKEY_BENCH_RBTREE_H
#define MRKEY_BENCH_RBTREE_H

#include <stddef.h>
#include <stdint.h>

struct bench_rb_node {
	struct bench_rb_node *left;
	struct bench_rb_node *right;
	struct bench_rb_node *parent;
	uint64_t key;
	int red;
};

struct bench_rb_tree {
	struct bench_rb_node *root;
	struct bench_rb_node nil;
	size_t count;
};

void bench_rb_init(struct bench_rb_tree *t);
/* Returns 0, or -EEXIST (key present; the tree is unchanged). */
int bench_rb_insert(struct bench_rb_tree *t, struct bench_rb_node *z);
void bench_rb_erase(struct bench_rb_tree *t, struct bench_rb_node *z);
/* Checks every red-black invariant; returns the black height or -1. */
int bench_rb_check(const struct bench_rb_tree *t);
/* Inserts, finds and erases random keys; 0 when the tree holds up. */
int bench_rbtree_selftest(void);

static inline struct bench_rb_node *bench_rb_find(const struct bench_rb_tree *t,
						  uint64_t key)
{
	const struct bench_rb_node *nil = &t->nil;
	struct bench_rb_node *n = t->root;

	while (n != nil) {
		if (key < n->key)
			n = n->left;
		else if (key > n->key)
			n = n->right;
		else
			return n;
	}
	return NULL;
}

#endif /* MRKEY_BENCH_RBTREE_H */
