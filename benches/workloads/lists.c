/* Linked lists from a node pool: sorted insertion, reversal, deletion of every third node,
 * and a hash table of chains; each step is checked against a running count and sum. */
#include "common.h"

#ifdef SMALL
#define NODES 300
#else
#define NODES 900
#endif
#define BUCKETS 61
#ifndef ROUNDS
#define ROUNDS 3
#endif

struct node {
    u32 key;
    struct node *next;
};

static struct node pool[NODES];
static struct node *buckets[BUCKETS];

static struct node *insert_sorted(struct node *head, struct node *n) {
    struct node **p = &head;
    while (*p && (*p)->key < n->key) p = &(*p)->next;
    n->next = *p;
    *p = n;
    return head;
}

static struct node *reverse(struct node *head) {
    struct node *prev = 0;
    while (head) {
        struct node *next = head->next;
        head->next = prev;
        prev = head;
        head = next;
    }
    return prev;
}

static u32 check_descending(struct node *head, u32 *count) {
    u32 sum = 0, last = 0xFFFFFFFFu;
    for (*count = 0; head; head = head->next, ++*count) {
        if (head->key > last) return 0xFFFFFFFFu;
        last = head->key;
        sum += head->key;
    }
    return sum;
}

static struct node *drop_every_third(struct node *head, u32 *dropped) {
    struct node **p = &head;
    for (u32 i = 0; *p; i++) {
        if (i % 3 == 2) {
            *dropped += (*p)->key;
            *p = (*p)->next;
        } else {
            p = &(*p)->next;
        }
    }
    return head;
}

static u32 hash_lookups(void) {
    u32 found = 0;
    for (int i = 0; i < BUCKETS; i++) buckets[i] = 0;
    for (int i = 0; i < NODES; i++) {
        struct node *n = &pool[i];
        n->next = buckets[n->key % BUCKETS];
        buckets[n->key % BUCKETS] = n;
    }
    for (int i = 0; i < NODES; i++)
        for (struct node *n = buckets[pool[i].key % BUCKETS]; n; n = n->next)
            if (n->key == pool[i].key) {
                found++;
                break;
            }
    return found;
}

u32 workload(void) {
    u32 seed = 7;
    for (int r = 0; r < ROUNDS; r++) {
        struct node *head = 0;
        u32 sum = 0, count, dropped = 0;
        for (int i = 0; i < NODES; i++) {
            pool[i].key = next_random(&seed) & 0xFFFFF;
            sum += pool[i].key;
            head = insert_sorted(head, &pool[i]);
        }
        head = reverse(head);
        if (check_descending(head, &count) != sum || count != NODES) return 1;
        head = drop_every_third(head, &dropped);
        if (check_descending(head, &count) != sum - dropped || count != NODES - NODES / 3) return 2;
        if (hash_lookups() != NODES) return 3;
    }
    return 0;
}
