/*-------------------------------------------------------------------------
 *
 * state.c
 *	  The orderflow.order_state base type: one byte, pass-by-value, ordered
 *	  by process stage.
 *
 * Text input accepts the canonical English names in any case and the
 * Chinese labels of the operations manual; output is always the canonical
 * English name.  The binary form is the single stage byte.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"
#endif
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "orderflow.h"

typedef struct StateNames
{
	const char *name;			/* canonical English name */
	const char *label_en;		/* human label, English */
	const char *label_zh;		/* human label, Chinese */
} StateNames;

/*
 * Chinese labels are written as universal character names (the compiler
 * emits UTF-8), so no tool that rewrites the source can mangle their bytes;
 * the comment beside each shows it.
 */
static const StateNames state_names[OS_COUNT] = {
	[OS_PENDING_PAYMENT] = {"pending_payment", "Pending payment", "\u5f85\u4ed8\u6b3e"},	/* 待付款 */
	[OS_PAID] = {"paid", "Paid", "\u5df2\u4ed8\u6b3e\u5f85\u5904\u7406"},	/* 已付款待处理 */
	[OS_ON_HOLD] = {"on_hold", "On hold", "\u6682\u5b58"},	/* 暂存 */
	[OS_APPROVED] = {"approved", "Approved", "\u5ba1\u6838\u901a\u8fc7"},	/* 审核通过 */
	[OS_BACKORDERED] = {"backordered", "Backordered", "\u7b49\u5f85\u9f50\u5957"},	/* 等待齐套 */
	[OS_ALLOCATED] = {"allocated", "Allocated", "\u5df2\u9501\u5e93\u5b58"},	/* 已锁库存 */
	[OS_PICKING] = {"picking", "Picking", "\u62e3\u8d27\u4e2d"},	/* 拣货中 */
	[OS_PICKED] = {"picked", "Picked", "\u5df2\u62e3\u8d27"},	/* 已拣货 */
	[OS_PACKED] = {"packed", "Packed", "\u5df2\u6253\u5305"},	/* 已打包 */
	[OS_PARTIALLY_SHIPPED] = {"partially_shipped", "Partially shipped", "\u90e8\u5206\u53d1\u8d27"},	/* 部分发货 */
	[OS_SHIPPED] = {"shipped", "Shipped", "\u5df2\u53d1\u8d27"},	/* 已发货 */
	[OS_DELIVERED] = {"delivered", "Delivered", "\u5df2\u7b7e\u6536"},	/* 已签收 */
	[OS_COMPLETED] = {"completed", "Completed", "\u5df2\u5b8c\u6210"},	/* 已完成 */
	[OS_CANCELLED] = {"cancelled", "Cancelled", "\u5df2\u53d6\u6d88"},	/* 已取消 */
};

const char *
OrderStateName(OrderState state)
{
	Assert(state < OS_COUNT);
	return state_names[state].name;
}

const char *
OrderStateLabel(OrderState state, bool chinese)
{
	Assert(state < OS_COUNT);
	return chinese ? state_names[state].label_zh : state_names[state].label_en;
}

/*
 * Render a set of states as "a, b, c" in stage order, or "none".
 */
char	   *
OrderStateSetToString(OrderStateSet set)
{
	StringInfoData buf;

	if (set == 0)
		return pstrdup("none");
	initStringInfo(&buf);
	for (int s = 0; s < OS_COUNT; s++)
	{
		if (set & (1 << s))
		{
			if (buf.len > 0)
				appendStringInfoString(&buf, ", ");
			appendStringInfoString(&buf, state_names[s].name);
		}
	}
	return buf.data;
}

/*
 * Look a literal up: canonical names case-insensitively (ASCII only, so the
 * result does not depend on the locale), Chinese labels exactly.  Leading
 * and trailing blanks are ignored.  Returns -1 when nothing matches.
 */
static int
LookupState(const char *str)
{
	const char *start = str;
	const char *end;
	size_t		len;

	while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
		start++;
	end = start + strlen(start);
	while (end > start &&
		   (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		end--;
	len = end - start;

	for (int s = 0; s < OS_COUNT; s++)
	{
		if (strlen(state_names[s].name) == len &&
			pg_strncasecmp(start, state_names[s].name, len) == 0)
			return s;
		if (strlen(state_names[s].label_zh) == len &&
			memcmp(start, state_names[s].label_zh, len) == 0)
			return s;
	}
	return -1;
}

PG_FUNCTION_INFO_V1(order_state_in);
Datum
order_state_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	int			state = LookupState(str);

	if (state < 0)
	{
#if PG_VERSION_NUM >= 160000
		ereturn(fcinfo->context, (Datum) 0,
#else
		ereport(ERROR,
#endif
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s: \"%s\"",
						"order_state", str),
				 errhint("Valid values are %s, or their Chinese labels.",
						 OrderStateSetToString((1 << OS_COUNT) - 1))));
	}
	PG_RETURN_ORDER_STATE((OrderState) state);
}

PG_FUNCTION_INFO_V1(order_state_out);
Datum
order_state_out(PG_FUNCTION_ARGS)
{
	OrderState	state = PG_GETARG_ORDER_STATE(0);

	if (state >= OS_COUNT)
		elog(ERROR, "corrupted order_state value %d", (int) state);
	PG_RETURN_CSTRING(pstrdup(state_names[state].name));
}

PG_FUNCTION_INFO_V1(order_state_recv);
Datum
order_state_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			state = pq_getmsgbyte(buf);

	if (state < 0 || state >= OS_COUNT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid external order_state value %d", state),
				 errdetail("Valid values are 0 to %d.", OS_COUNT - 1)));
	PG_RETURN_ORDER_STATE((OrderState) state);
}

PG_FUNCTION_INFO_V1(order_state_send);
Datum
order_state_send(PG_FUNCTION_ARGS)
{
	OrderState	state = PG_GETARG_ORDER_STATE(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbyte(&buf, (uint8) state);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Comparison: stage order. */

#define STATE_CMP_FUNC(fname, op) \
PG_FUNCTION_INFO_V1(fname); \
Datum \
fname(PG_FUNCTION_ARGS) \
{ \
	PG_RETURN_BOOL(PG_GETARG_ORDER_STATE(0) op PG_GETARG_ORDER_STATE(1)); \
}

STATE_CMP_FUNC(order_state_eq, ==)
STATE_CMP_FUNC(order_state_ne, !=)
STATE_CMP_FUNC(order_state_lt, <)
STATE_CMP_FUNC(order_state_le, <=)
STATE_CMP_FUNC(order_state_gt, >)
STATE_CMP_FUNC(order_state_ge, >=)

PG_FUNCTION_INFO_V1(order_state_smaller);
Datum
order_state_smaller(PG_FUNCTION_ARGS)
{
	PG_RETURN_ORDER_STATE(Min(PG_GETARG_ORDER_STATE(0), PG_GETARG_ORDER_STATE(1)));
}

PG_FUNCTION_INFO_V1(order_state_larger);
Datum
order_state_larger(PG_FUNCTION_ARGS)
{
	PG_RETURN_ORDER_STATE(Max(PG_GETARG_ORDER_STATE(0), PG_GETARG_ORDER_STATE(1)));
}

PG_FUNCTION_INFO_V1(order_state_cmp);
Datum
order_state_cmp(PG_FUNCTION_ARGS)
{
	int			a = PG_GETARG_ORDER_STATE(0);
	int			b = PG_GETARG_ORDER_STATE(1);

	PG_RETURN_INT32(a < b ? -1 : (a > b ? 1 : 0));
}

PG_FUNCTION_INFO_V1(order_state_hash);
Datum
order_state_hash(PG_FUNCTION_ARGS)
{
	return hash_uint32((uint32) PG_GETARG_ORDER_STATE(0));
}

PG_FUNCTION_INFO_V1(order_state_hash_extended);
Datum
order_state_hash_extended(PG_FUNCTION_ARGS)
{
	return hash_uint32_extended((uint32) PG_GETARG_ORDER_STATE(0),
								PG_GETARG_INT64(1));
}

/*
 * orderflow.label(state, lang): the human label in English ('en') or
 * Chinese ('zh', 'zh-CN', 'zh_CN').
 */
PG_FUNCTION_INFO_V1(order_state_label);
Datum
order_state_label(PG_FUNCTION_ARGS)
{
	OrderState	state = PG_GETARG_ORDER_STATE(0);
	char	   *lang = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		chinese;

	if (pg_strcasecmp(lang, "en") == 0)
		chinese = false;
	else if (pg_strcasecmp(lang, "zh") == 0 ||
			 pg_strcasecmp(lang, "zh-cn") == 0 ||
			 pg_strcasecmp(lang, "zh_cn") == 0)
		chinese = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unsupported label language \"%s\"", lang),
				 errhint("Use \"en\" or \"zh\".")));
	PG_RETURN_TEXT_P(cstring_to_text(OrderStateLabel(state, chinese)));
}

/*
 * orderflow.states(): every state with its stage number and labels.
 */
PG_FUNCTION_INFO_V1(order_states);
Datum
order_states(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Tuplestorestate *tupstore = MaterializeResult(fcinfo, &desc);

	for (int s = 0; s < OS_COUNT; s++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = OrderStateGetDatum((OrderState) s);
		values[1] = Int32GetDatum(s);
		values[2] = CStringGetTextDatum(state_names[s].label_en);
		values[3] = CStringGetTextDatum(state_names[s].label_zh);
		tuplestore_putvalues(tupstore, desc, values, nulls);
	}
	return (Datum) 0;
}
