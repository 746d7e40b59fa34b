/*
 * megatcp's XDP program: hands the AF_XDP socket of a queue only the frames that belong
 * to the megatcp process owning that queue, and passes everything else to the kernel.
 *
 * A queue's rule (map `megatcp_rules`, by receive queue) holds the address of the stack
 * reading that queue's socket. Redirected to the socket (map `megatcp_xsks`):
 *   - IPv4 frames to that address (with the PORTS flag: TCP only to a listed port, map
 *     `megatcp_ports`, or to the stack's ephemeral range; other IPv4 protocols as without);
 *   - ARP frames whose target address is that address (requests for it, replies to it).
 * Everything else (the host's own addresses, IPv6, VLANs, other stacks' addresses) and
 * every frame of a queue without a rule or without a socket goes on to the kernel. A rule
 * with RULE_ALL sends every frame of its queue to the socket (a NIC megatcp has alone).
 *
 * Built by nic/build.rs with `clang -target bpf`; loaded through libxdp by
 * nic/src/afxdp/program.rs, which also fills the maps. Only the first bytes of a frame
 * are read, so frames in several buffers (jumbo frames, section "xdp.frags") are fine.
 * Self-contained: the few kernel ABI values it needs are spelled out below (from
 * include/uapi/linux/bpf.h), so no kernel headers are needed to build it.
 */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
/* BTF-defined maps, as libbpf reads them. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name

/* enum bpf_map_type */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_XSKMAP 17
/* enum xdp_action */
#define XDP_PASS 2

/* The context of an XDP program (struct xdp_md). */
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

/* Helpers, by their number in the kernel's helper table. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

/* Must match `Rule` in program.rs. */
struct rule {
	__u32 addr;     /* the stack's IPv4 address, network order; 0: no rule */
	__u32 flags;    /* RULE_PORTS, RULE_ALL */
	__u16 eph_lo;   /* ephemeral ports (host order), with RULE_PORTS */
	__u16 eph_hi;
};
#define RULE_PORTS 1
#define RULE_ALL 2 /* every frame of the queue */

/* Must match `PortKey` in program.rs. */
struct port_key {
	__u32 addr;     /* network order */
	__u16 port;     /* host order */
	__u16 pad;
};

#define MAX_QUEUES 256

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} megatcp_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct rule);
} megatcp_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct port_key);
	__type(value, __u8);
} megatcp_ports SEC(".maps");

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define IPPROTO_TCP 6

static __attribute__((always_inline)) __u16 be16(const __u8 *p)
{
	return (__u16)((p[0] << 8) | p[1]);
}

static __attribute__((always_inline)) __u32 raw32(const __u8 *p)
{
	__u32 v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

SEC("xdp.frags")
int megatcp_xdp(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	__u32 queue = ctx->rx_queue_index;
	struct rule *rule = bpf_map_lookup_elem(&megatcp_rules, &queue);

	if (!rule || !rule->addr)
		return XDP_PASS;
	if (rule->flags & RULE_ALL)
		return bpf_redirect_map(&megatcp_xsks, queue, XDP_PASS);
	if (data + ETH_HLEN > end)
		return XDP_PASS;
	__u16 type = be16(data + 12);
	if (type == ETH_P_ARP) {
		/* Ethernet/IPv4 ARP: the target protocol address is at bytes 24..28. */
		if (data + ETH_HLEN + 28 > end || raw32(data + ETH_HLEN + 24) != rule->addr)
			return XDP_PASS;
		return bpf_redirect_map(&megatcp_xsks, queue, XDP_PASS);
	}
	if (type != ETH_P_IP || data + ETH_HLEN + 20 > end)
		return XDP_PASS;
	const __u8 *ip = data + ETH_HLEN;
	if (raw32(ip + 16) != rule->addr)
		return XDP_PASS;
	if ((rule->flags & RULE_PORTS) && ip[9] == IPPROTO_TCP) {
		__u32 ihl = (ip[0] & 0x0f) * 4;
		if (ihl < 20 || ihl > 60)
			return XDP_PASS;
		const __u8 *tcp = ip + ihl;
		if (tcp + 4 > end)
			return XDP_PASS;
		__u16 port = be16(tcp + 2);
		if (port < rule->eph_lo || port > rule->eph_hi) {
			struct port_key key = { .addr = rule->addr, .port = port, .pad = 0 };
			if (!bpf_map_lookup_elem(&megatcp_ports, &key))
				return XDP_PASS;
		}
	}
	return bpf_redirect_map(&megatcp_xsks, queue, XDP_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
