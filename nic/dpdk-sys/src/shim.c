/* See shim.h. Compiled with the whole `pkg-config --cflags libdpdk`. */
#include "shim.h"

uint16_t mtcp_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t mtcp_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_tx_burst(port, queue, pkts, n);
}

int mtcp_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n)
{
    return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}

struct rte_mbuf *mtcp_pktmbuf_alloc(struct rte_mempool *mp)
{
    return rte_pktmbuf_alloc(mp);
}

void mtcp_pktmbuf_free(struct rte_mbuf *m)
{
    rte_pktmbuf_free(m);
}

void *mtcp_pktmbuf_mtod(struct rte_mbuf *m)
{
    return rte_pktmbuf_mtod(m, void *);
}

char *mtcp_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
    return rte_pktmbuf_append(m, len);
}

void mtcp_rx_view(const struct rte_mbuf *m, struct mtcp_rx_view *view)
{
    uint64_t f = m->ol_flags;
    view->data = rte_pktmbuf_mtod(m, uint8_t *);
    view->len = m->data_len;
    view->rss = m->hash.rss;
    view->flags = 0;
    if (f & RTE_MBUF_F_RX_RSS_HASH)
        view->flags |= MTCP_RX_RSS;
    if ((f & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
        (f & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_BAD)
        view->flags |= MTCP_RX_CKSUM_BAD;
    if (m->nb_segs > 1)
        view->flags |= MTCP_RX_MULTISEG;
}

uint8_t *mtcp_tx_room(struct rte_mbuf *m, uint32_t *room)
{
    *room = rte_pktmbuf_tailroom(m);
    return rte_pktmbuf_mtod(m, uint8_t *);
}

void mtcp_tx_set_len(struct rte_mbuf *m, uint16_t len)
{
    m->data_len = len;
    m->pkt_len = len;
}

void mtcp_tx_offload_tcp4(struct rte_mbuf *m, uint8_t l2_len, uint16_t l3_len, uint16_t l4_len)
{
    m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_TCP_CKSUM;
    m->l2_len = l2_len;
    m->l3_len = l3_len;
    m->l4_len = l4_len;
}

int mtcp_errno(void)
{
    return rte_errno;
}

unsigned mtcp_lcore_id(void)
{
    return rte_lcore_id();
}

unsigned mtcp_lcore_id_any(void)
{
    return LCORE_ID_ANY;
}
