/* megatcp's C shim over DPDK's static inline fast path (rx/tx burst, mbuf alloc/free,
 * data pointers, rte_errno, lcore id), plus the headers bindgen reads. */
#ifndef MEGATCP_DPDK_SHIM_H
#define MEGATCP_DPDK_SHIM_H

#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

/* mtcp_rx_view flags */
#define MTCP_RX_RSS 1u       /* `rss` holds the device's RSS hash */
#define MTCP_RX_CKSUM_BAD 2u /* the device found a bad IPv4 or L4 checksum */
#define MTCP_RX_MULTISEG 4u  /* the frame spans several mbufs (only the first is viewed) */

/* What a received mbuf holds. */
struct mtcp_rx_view {
    uint8_t *data;
    uint32_t len;
    uint32_t rss;
    uint32_t flags;
};

uint16_t mtcp_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t mtcp_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
int mtcp_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
struct rte_mbuf *mtcp_pktmbuf_alloc(struct rte_mempool *mp);
void mtcp_pktmbuf_free(struct rte_mbuf *m);
void *mtcp_pktmbuf_mtod(struct rte_mbuf *m);
char *mtcp_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
void mtcp_rx_view(const struct rte_mbuf *m, struct mtcp_rx_view *view);
uint8_t *mtcp_tx_room(struct rte_mbuf *m, uint32_t *room);
void mtcp_tx_set_len(struct rte_mbuf *m, uint16_t len);
/* Asks the device to fill the IPv4 header and TCP checksums of the TCP/IPv4 frame in `m`
 * (checksum offload: IPv4 checksum 0, TCP checksum the pseudo-header sum). */
void mtcp_tx_offload_tcp4(struct rte_mbuf *m, uint8_t l2_len, uint16_t l3_len, uint16_t l4_len);
int mtcp_errno(void);
unsigned mtcp_lcore_id(void);
unsigned mtcp_lcore_id_any(void);

#endif
