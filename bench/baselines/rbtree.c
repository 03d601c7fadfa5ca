/* SPDX-License-Identifier: MIT */
/* Red-black tree for the rbtree-mutex baseline; see rbtree.h. */
#include <errno.h>

#include "../common.h"
#include "rbtree.h"

void bench_rb_init(struct bench_rb_tree *t)
{
	t->nil.left = &t->nil;
	t->nil.right = &t->nil;
	t->nil.parent = &t->nil;
	t->nil.key = 0;
	t->nil.red = 0;
	t->root = &t->nil;
	t->count = 0;
}

static void rotate_left(struct bench_rb_tree *t, struct bench_rb_node *x)
{
	struct bench_rb_node *y = x->right;

	x->right = y->left;
	if (y->left != &t->nil)
		y->left->parent = x;
	y->parent = x->parent;
	if (x->parent == &t->nil)
		t->root = y;
	else if (x == x->parent->left)
		x->parent->left = y;
	else
		x->parent->right = y;
	y->left = x;
	x->parent = y;
}

static void rotate_right(struct bench_rb_tree *t, struct bench_rb_node *x)
{
	struct bench_rb_node *y = x->left;

	x->left = y->right;
	if (y->right != &t->nil)
		y->right->parent = x;
	y->parent = x->parent;
	if (x->parent == &t->nil)
		t->root = y;
	else if (x == x->parent->right)
		x->parent->right = y;
	else
		x->parent->left = y;
	y->right = x;
	x->parent = y;
}

int bench_rb_insert(struct bench_rb_tree *t, struct bench_rb_node *z)
{
	struct bench_rb_node *y = &t->nil, *x = t->root;

	while (x != &t->nil) {
		y = x;
		if (z->key < x->key)
			x = x->left;
		else if (z->key > x->key)
			x = x->right;
		else
			return -EEXIST;
	}
	z->parent = y;
	if (y == &t->nil)
		t->root = z;
	else if (z->key < y->key)
		y->left = z;
	else
		y->right = z;
	z->left = &t->nil;
	z->right = &t->nil;
	z->red = 1;

	while (z->parent->red) {
		struct bench_rb_node *g = z->parent->parent;

		if (z->parent == g->left) {
			y = g->right;
			if (y->red) {
				z->parent->red = 0;
				y->red = 0;
				g->red = 1;
				z = g;
				continue;
			}
			if (z == z->parent->right) {
				z = z->parent;
				rotate_left(t, z);
			}
			z->parent->red = 0;
			z->parent->parent->red = 1;
			rotate_right(t, z->parent->parent);
		} else {
			y = g->left;
			if (y->red) {
				z->parent->red = 0;
				y->red = 0;
				g->red = 1;
				z = g;
				continue;
			}
			if (z == z->parent->left) {
				z = z->parent;
				rotate_right(t, z);
			}
			z->parent->red = 0;
			z->parent->parent->red = 1;
			rotate_left(t, z->parent->parent);
		}
	}
	t->root->red = 0;
	t->count++;
	return 0;
}

static void transplant(struct bench_rb_tree *t, struct bench_rb_node *u,
		       struct bench_rb_node *v)
{
	if (u->parent == &t->nil)
		t->root = v;
	else if (u == u->parent->left)
		u->parent->left = v;
	else
		u->parent->right = v;
	v->parent = u->parent;
}

static void erase_fixup(struct bench_rb_tree *t, struct bench_rb_node *x)
{
	struct bench_rb_node *w;

	while (x != t->root && !x->red) {
		if (x == x->parent->left) {
			w = x->parent->right;
			if (w->red) {
				w->red = 0;
				x->parent->red = 1;
				rotate_left(t, x->parent);
				w = x->parent->right;
			}
			if (!w->left->red && !w->right->red) {
				w->red = 1;
				x = x->parent;
				continue;
			}
			if (!w->right->red) {
				w->left->red = 0;
				w->red = 1;
				rotate_right(t, w);
				w = x->parent->right;
			}
			w->red = x->parent->red;
			x->parent->red = 0;
			w->right->red = 0;
			rotate_left(t, x->parent);
			x = t->root;
		} else {
			w = x->parent->left;
			if (w->red) {
				w->red = 0;
				x->parent->red = 1;
				rotate_right(t, x->parent);
				w = x->parent->left;
			}
			if (!w->right->red && !w->left->red) {
				w->red = 1;
				x = x->parent;
				continue;
			}
			if (!w->left->red) {
				w->right->red = 0;
				w->red = 1;
				rotate_left(t, w);
				w = x->parent->left;
			}
			w->red = x->parent->red;
			x->parent->red = 0;
			w->left->red = 0;
			rotate_right(t, x->parent);
			x = t->root;
		}
	}
	x->red = 0;
}

void bench_rb_erase(struct bench_rb_tree *t, struct bench_rb_node *z)
{
	struct bench_rb_node *x, *y = z;
	int y_red = y->red;

	if (z->left == &t->nil) {
		x = z->right;
		transplant(t, z, z->right);
	} else if (z->right == &t->nil) {
		x = z->left;
		transplant(t, z, z->left);
	} else {
		y = z->right;
		while (y->left != &t->nil)
			y = y->left;
		y_red = y->red;
		x = y->right;
		if (y->parent == z) {
			x->parent = y;
		} else {
			transplant(t, y, y->right);
			y->right = z->right;
			y->right->parent = y;
		}
		transplant(t, z, y);
		y->left = z->left;
		y->left->parent = y;
		y->red = z->red;
	}
	if (!y_red)
		erase_fixup(t, x);
	/* The sentinel's parent is scratch space for the fixup only. */
	t->nil.parent = &t->nil;
	t->count--;
}

static int check_node(const struct bench_rb_tree *t,
		      const struct bench_rb_node *n, uint64_t lo, uint64_t hi)
{
	int l, r;

	if (n == &t->nil)
		return 1;
	if (n->key < lo || n->key > hi)
		return -1;
	if (n->red && (n->left->red || n->right->red))
		return -1;
	if ((n->left != &t->nil && n->left->parent != n) ||
	    (n->right != &t->nil && n->right->parent != n))
		return -1;
	/* Keys are distinct: nothing is left of 0 or right of the maximum. */
	l = n->key ? check_node(t, n->left, lo, n->key - 1) :
		     (n->left == &t->nil ? 1 : -1);
	r = n->key != UINT64_MAX ? check_node(t, n->right, n->key + 1, hi) :
				   (n->right == &t->nil ? 1 : -1);
	if (l < 0 || r < 0 || l != r)
		return -1;
	return l + !n->red;
}

int bench_rb_check(const struct bench_rb_tree *t)
{
	if (t->root->red || t->nil.red)
		return -1;
	return check_node(t, t->root, 0, UINT64_MAX);
}

int bench_rbtree_selftest(void)
{
	enum {
		N = 4096
	};
	static struct bench_rb_node nodes[N];
	struct bench_rb_tree tree;
	uint64_t rng = 42;
	int i, j;

	bench_rb_init(&tree);
	for (i = 0; i < N; i++) {
		do
			nodes[i].key = bench_xorshift64s(&rng);
		while (bench_rb_insert(&tree, &nodes[i]));
	}
	if (bench_rb_check(&tree) < 0)
		return -1;
	for (i = 0; i < N; i++)
		if (bench_rb_find(&tree, nodes[i].key) != &nodes[i])
			return -1;
	for (j = 0; j < N; j += 2) {
		bench_rb_erase(&tree, &nodes[j]);
		if ((j & 255) == 0 && bench_rb_check(&tree) < 0)
			return -1;
	}
	for (i = 0; i < N; i++)
		if ((bench_rb_find(&tree, nodes[i].key) != NULL) != (i & 1))
			return -1;
	for (j = 1; j < N; j += 2)
		bench_rb_erase(&tree, &nodes[j]);
	if (tree.count != 0 || tree.root != &tree.nil)
		return -1;
	return 0;
}
