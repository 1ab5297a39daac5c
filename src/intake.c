/*-------------------------------------------------------------------------
 *
 * intake.c
 *	  Normalization of generic order documents for the set-based path of
 *	  orderflow.sync().
 *
 * orderflow.intake_normalize (PL/pgSQL) is the definition of a normalized
 * document: it checks a generic order JSON document and returns it with
 * amounts as numbers and the recomputed totals, or raises OF030 naming the
 * first problem.  intake_normalize_generic here gives the same document for
 * the documents it can check completely without raising, and NULL for every
 * other one (an invalid document, or a valid one in a rarer form, such as a
 * time of 24:00); the caller then uses orderflow.intake_normalize, which
 * gives the answer or the error.  It accepts exactly the documents that the
 * set-based SQL it replaces accepted.
 *
 * Amounts are computed with the numeric functions SQL uses (add, multiply,
 * divide, floor, round), in the same order, so that values and display
 * scales, and so the document's text and its hash, are the same as those of
 * orderflow.intake_normalize.  Nothing here raises an error for any input.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#if PG_VERSION_NUM >= 140000
#include "common/cryptohash.h"
#endif
#include "common/sha2.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "orderflow.h"

/* The kind of a value read from a JSON object, or that it is missing. */
typedef enum JsonKind
{
	JK_MISSING,
	JK_NULL,
	JK_STRING,
	JK_NUMBER,
	JK_BOOL,
	JK_OBJECT,
	JK_ARRAY
} JsonKind;

/* An amount: missing (or JSON null), invalid, or a value. */
typedef enum AmountKind
{
	AMOUNT_NULL,
	AMOUNT_INVALID,
	AMOUNT_VALID
} AmountKind;

/* A time: missing (or empty), not vouched for, or a value. */
typedef enum TimeKind
{
	TIME_NULL,
	TIME_OTHER,
	TIME_VALID
} TimeKind;

static JsonKind
KindOf(JsonbValue *v)
{
	if (v == NULL)
		return JK_MISSING;
	switch (v->type)
	{
		case jbvNull:
			return JK_NULL;
		case jbvString:
			return JK_STRING;
		case jbvNumeric:
			return JK_NUMBER;
		case jbvBool:
			return JK_BOOL;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? JK_OBJECT : JK_ARRAY;
		default:
			return JK_ARRAY;
	}
}

/* obj->key, or NULL when obj is NULL or has no such key. */
static JsonbValue *
GetKey(JsonbContainer *obj, const char *key)
{
	if (obj == NULL)
		return NULL;
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

/* The container of an object value, or NULL for anything else. */
static JsonbContainer *
ObjectOf(JsonbValue *v)
{
	return KindOf(v) == JK_OBJECT ? v->val.binary.data : NULL;
}

/* The text of a string or number (what #>> '{}' gives), NUL-terminated. */
static char *
ScalarText(JsonbValue *v)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	return DatumGetCString(DirectFunctionCall1(numeric_out,
											   NumericGetDatum(v->val.numeric)));
}

/* Trims the characters in chars from both ends of s, in place. */
static char *
Trim(char *s, const char *chars)
{
	char	   *end;

	while (*s && strchr(chars, *s))
		s++;
	end = s + strlen(s);
	while (end > s && strchr(chars, end[-1]))
		end--;
	*end = '\0';
	return s;
}

/* The first n characters of s (left(s, n)). */
static char *
LeftChars(char *s, int n)
{
	int			len;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	len = pg_mbcharcliplen(s, len, n);
	s[len] = '\0';
	return s;
}

/*
 * A text field (orderflow.intake_text): strings and numbers, trimmed, empty
 * is NULL.  Returns false for objects, arrays and booleans.
 */
static bool
TextField(JsonbValue *v, char **out)
{
	JsonKind	k = KindOf(v);

	*out = NULL;
	if (k == JK_MISSING || k == JK_NULL)
		return true;
	if (k != JK_STRING && k != JK_NUMBER)
		return false;
	*out = Trim(ScalarText(v), " \t\r\n");
	if (**out == '\0')
		*out = NULL;
	return true;
}

/* Whether s is one or more ASCII digits, between min and max of them. */
static bool
AllDigits(const char *s, int len, int min, int max)
{
	if (len < min || len > max)
		return false;
	for (int i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static Datum
IntNumeric(int32 i)
{
	return DirectFunctionCall1(int4_numeric, Int32GetDatum(i));
}

static int
NumCmp(Datum a, Datum b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, a, b));
}

static Datum
NumAdd(Datum a, Datum b)
{
	return DirectFunctionCall2(numeric_add, a, b);
}

static Datum
NumSub(Datum a, Datum b)
{
	return DirectFunctionCall2(numeric_sub, a, b);
}

static Datum
NumMul(Datum a, Datum b)
{
	return DirectFunctionCall2(numeric_mul, a, b);
}

/*
 * An amount (orderflow.intake_money): a JSON number or decimal string of up
 * to 12 digits and at most two significant decimals, rounded to two.
 */
static AmountKind
Amount(JsonbValue *v, Datum *out)
{
	JsonKind	k = KindOf(v);
	char	   *t;
	char	   *p;
	int			intlen;

	if (k == JK_MISSING || k == JK_NULL)
		return AMOUNT_NULL;
	if (k != JK_STRING && k != JK_NUMBER)
		return AMOUNT_INVALID;
	t = Trim(ScalarText(v), " ");
	for (p = t; *p >= '0' && *p <= '9'; p++)
		;
	intlen = p - t;
	if (intlen < 1 || intlen > 12)
		return AMOUNT_INVALID;
	if (*p == '.')
	{
		char	   *frac = ++p;

		for (; *p >= '0' && *p <= '9'; p++)
			;
		if (p == frac)
			return AMOUNT_INVALID;
		/* more than two decimals only when the others are zeros */
		for (char *z = frac + 2; z < p; z++)
			if (*z != '0')
				return AMOUNT_INVALID;
	}
	if (*p != '\0')
		return AMOUNT_INVALID;
	*out = DirectFunctionCall2(numeric_round,
							   DirectFunctionCall3(numeric_in, CStringGetDatum(t),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)),
							   Int32GetDatum(2));
	return AMOUNT_VALID;
}

/*
 * An amount that reads as -1 when invalid (the form the checks below
 * compare): sets *valid to false then.  NULL stays NULL (*isnull).
 */
static Datum
AmountOr(JsonbValue *v, bool *isnull, bool *valid)
{
	Datum		d = (Datum) 0;

	switch (Amount(v, &d))
	{
		case AMOUNT_NULL:
			*isnull = true;
			return (Datum) 0;
		case AMOUNT_INVALID:
			*isnull = false;
			*valid = false;
			return (Datum) 0;
		case AMOUNT_VALID:
			break;
	}
	*isnull = false;
	return d;
}

static bool
TwoDigits(const char *s, char lo0, char hi0, char lo1, char hi1)
{
	return s[0] >= lo0 && s[0] <= hi0 && s[1] >= lo1 && s[1] <= hi1;
}

/*
 * A time, as orderflow.intake_time reads it, in the forms vouched for:
 * YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|+HH[[:]MM]], a real date, hours up
 * to 23, offsets up to 14 hours.  A time without an offset is UTC.
 */
static TimeKind
Time(JsonbValue *v, TimestampTz *out)
{
	JsonKind	k = KindOf(v);
	char	   *t;
	const char *p;
	int			len;
	int			year;
	int			month;
	int			day;
	int			mdays;
	bool		zone = false;

	if (k == JK_MISSING || k == JK_NULL)
		return TIME_NULL;
	if (k != JK_STRING)
		return TIME_OTHER;
	t = Trim(ScalarText(v), " ");
	if (*t == '\0')
		return TIME_NULL;
	len = strlen(t);
	if (len < 16 || !AllDigits(t, 4, 4, 4) || t[4] != '-' || t[7] != '-'
		|| (t[10] != 'T' && t[10] != ' ') || t[13] != ':')
		return TIME_OTHER;
	if (!(TwoDigits(t + 5, '0', '0', '1', '9') || TwoDigits(t + 5, '1', '1', '0', '2')))
		return TIME_OTHER;
	if (!(TwoDigits(t + 8, '0', '0', '1', '9') || TwoDigits(t + 8, '1', '2', '0', '9')
		  || TwoDigits(t + 8, '3', '3', '0', '1')))
		return TIME_OTHER;
	if (!(TwoDigits(t + 11, '0', '1', '0', '9') || TwoDigits(t + 11, '2', '2', '0', '3')))
		return TIME_OTHER;
	if (!TwoDigits(t + 14, '0', '5', '0', '9'))
		return TIME_OTHER;
	p = t + 16;
	if (*p == ':')
	{
		if (!TwoDigits(p + 1, '0', '5', '0', '9'))
			return TIME_OTHER;
		p += 3;
		if (*p == '.')
		{
			const char *frac = ++p;

			while (*p >= '0' && *p <= '9')
				p++;
			if (p - frac < 1 || p - frac > 6)
				return TIME_OTHER;
		}
	}
	if (*p == 'Z')
	{
		zone = true;
		p++;
	}
	else if (*p == '+' || *p == '-')
	{
		zone = true;
		if (!(TwoDigits(p + 1, '0', '0', '0', '9') || TwoDigits(p + 1, '1', '1', '0', '4')))
			return TIME_OTHER;
		p += 3;
		if (*p == ':')
		{
			if (!TwoDigits(p + 1, '0', '5', '0', '9'))
				return TIME_OTHER;
			p += 3;
		}
		else if (*p != '\0')
		{
			if (!TwoDigits(p, '0', '5', '0', '9'))
				return TIME_OTHER;
			p += 2;
		}
	}
	if (*p != '\0')
		return TIME_OTHER;

	year = atoi(t);
	month = (t[5] - '0') * 10 + (t[6] - '0');
	day = (t[8] - '0') * 10 + (t[9] - '0');
	if (year == 0)
		return TIME_OTHER;
	if (month == 4 || month == 6 || month == 9 || month == 11)
		mdays = 30;
	else if (month != 2)
		mdays = 31;
	else if (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
		mdays = 29;
	else
		mdays = 28;
	if (day > mdays)
		return TIME_OTHER;

	if (zone)
		*out = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(t),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
	else
		/* timezone('UTC', t::timestamp): the same microseconds */
		*out = DatumGetTimestamp(DirectFunctionCall3(timestamp_in, CStringGetDatum(t),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	if (TIMESTAMP_NOT_FINITE(*out))
		return TIME_OTHER;
	return TIME_VALID;
}

/*
 * orderflow.intake_iso: to_char(timezone('UTC', ts),
 * 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"').  NULL when ts cannot be shown so.
 */
static char *
IsoTime(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			year;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return NULL;
	/* to_char shows years before 1 AD by their BC number */
	year = tm.tm_year <= 0 ? -(tm.tm_year - 1) : tm.tm_year;
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* Building the result: keys with NULL values are left out (jsonb_strip_nulls). */
static void
PushKey(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

static void
PushText(JsonbParseState **st, const char *key, const char *val)
{
	JsonbValue	v;

	if (val == NULL)
		return;
	PushKey(st, key);
	v.type = jbvString;
	v.val.string.val = (char *) val;
	v.val.string.len = strlen(val);
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
PushNumeric(JsonbParseState **st, const char *key, Datum val, bool isnull)
{
	JsonbValue	v;

	if (isnull)
		return;
	PushKey(st, key);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(val);
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
PushBool(JsonbParseState **st, const char *key, bool val)
{
	JsonbValue	v;

	PushKey(st, key);
	v.type = jbvBool;
	v.val.boolean = val;
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* A JSON boolean field, false when missing or not a boolean. */
static bool
BoolOrFalse(JsonbValue *v)
{
	return KindOf(v) == JK_BOOL && v->val.boolean;
}

/* Whether a key is absent or its value is of one of two kinds. */
static bool
AbsentOr(JsonbValue *v, JsonKind a, JsonKind b)
{
	JsonKind	k = KindOf(v);

	return k == JK_MISSING || k == a || k == b;
}

/* A whole ASCII string matching ^[A-Z]{n}$. */
static bool
UpperCode(const char *s, int n)
{
	if ((int) strlen(s) != n)
		return false;
	for (int i = 0; i < n; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return true;
}

/* One order line, as read. */
typedef struct LineIn
{
	char	   *sku;
	char	   *psku;
	char	   *name;
	int32		qty;
	Datum		price;
	Datum		discount;
} LineIn;

/* One order discount, as read and computed. */
typedef struct DiscountIn
{
	char	   *kind;
	char	   *code;
	char	   *descr;
	bool		per_step;
	bool		allocated;
	Datum		threshold;		/* kind threshold only */
	Datum		percent;		/* kind percent only */
	Datum		amount;
} DiscountIn;

PG_FUNCTION_INFO_V1(orderflow_intake_normalize_generic);

/*
 * orderflow.intake_normalize_generic(doc jsonb) returns jsonb
 */
Datum
orderflow_intake_normalize_generic(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	JsonbContainer *doc = &jb->root;
	JsonbContainer *recv;
	JsonbContainer *buyer;
	JsonbContainer *pay;
	JsonbContainer *lines_c;
	JsonbContainer *disc_c = NULL;
	JsonbValue *v;
	JsonbParseState *st = NULL;
	JsonbValue *res;
	char	   *order_no,
			   *status,
			   *platform_ref,
			   *note,
			   *seller_note,
			   *currency,
			   *buyer_id,
			   *buyer_name,
			   *buyer_phone,
			   *recv_name,
			   *recv_phone,
			   *recv_country,
			   *recv_province,
			   *recv_city,
			   *recv_district,
			   *recv_address,
			   *recv_postcode,
			   *pay_method,
			   *pay_txn;
	TimestampTz created = 0,
				paid_at = 0,
				payment_paid = 0;
	TimeKind	created_k,
				paid_k,
				payment_paid_k;
	char	   *created_iso;
	char	   *paid_iso = NULL;
	char	   *payment_paid_iso = NULL;
	int			nlines;
	int			ndisc = 0;
	LineIn	   *lines;
	DiscountIn *discs = NULL;
	Datum		zero = IntNumeric(0);
	Datum		goods = zero;
	Datum		line_disc = zero;
	Datum		order_disc = zero;
	Datum		net;
	Datum		ship,
				tax,
				stated = (Datum) 0,
				pay_amt = (Datum) 0,
				computed,
				paid_amount;
	bool		ship_null,
				tax_null,
				stated_null,
				pay_amt_null;
	bool		valid = true;

	if (!JB_ROOT_IS_OBJECT(jb))
		PG_RETURN_NULL();

	recv = ObjectOf(GetKey(doc, "receiver"));
	buyer = ObjectOf(GetKey(doc, "buyer"));
	pay = ObjectOf(GetKey(doc, "payment"));

	/* Text fields. */
	if (!TextField(GetKey(doc, "order_no"), &order_no)
		|| !TextField(GetKey(doc, "status"), &status)
		|| !TextField(GetKey(doc, "platform_ref"), &platform_ref)
		|| !TextField(GetKey(doc, "note"), &note)
		|| !TextField(GetKey(doc, "seller_note"), &seller_note)
		|| !TextField(GetKey(doc, "currency"), &currency)
		|| !TextField(GetKey(buyer, "id"), &buyer_id)
		|| !TextField(GetKey(buyer, "name"), &buyer_name)
		|| !TextField(GetKey(buyer, "phone"), &buyer_phone)
		|| !TextField(GetKey(recv, "name"), &recv_name)
		|| !TextField(GetKey(recv, "phone"), &recv_phone)
		|| !TextField(GetKey(recv, "country"), &recv_country)
		|| !TextField(GetKey(recv, "province"), &recv_province)
		|| !TextField(GetKey(recv, "city"), &recv_city)
		|| !TextField(GetKey(recv, "district"), &recv_district)
		|| !TextField(GetKey(recv, "address"), &recv_address)
		|| !TextField(GetKey(recv, "postcode"), &recv_postcode)
		|| !TextField(GetKey(pay, "method"), &pay_method)
		|| !TextField(GetKey(pay, "transaction_id"), &pay_txn))
		PG_RETURN_NULL();

	/* The raw order number: at most 64 characters. */
	if (order_no == NULL)
		PG_RETURN_NULL();
	{
		char	   *raw = ScalarText(GetKey(doc, "order_no"));

		if (pg_mbstrlen(raw) > 64)
			PG_RETURN_NULL();
	}
	if (status == NULL
		|| (strcmp(status, "pending_payment") != 0 && strcmp(status, "paid") != 0
			&& strcmp(status, "cancelled") != 0))
		PG_RETURN_NULL();
	if (currency != NULL && !UpperCode(currency, 3))
		PG_RETURN_NULL();
	if (!UpperCode(recv_country ? recv_country : "CN", 2))
		PG_RETURN_NULL();
	if (!AbsentOr(GetKey(doc, "receiver"), JK_OBJECT, JK_NULL)
		|| !AbsentOr(GetKey(doc, "buyer"), JK_OBJECT, JK_NULL)
		|| !AbsentOr(GetKey(doc, "payment"), JK_OBJECT, JK_NULL)
		|| !AbsentOr(GetKey(doc, "allow_split"), JK_BOOL, JK_NULL))
		PG_RETURN_NULL();

	/* Times. */
	created_k = Time(GetKey(doc, "created_at"), &created);
	paid_k = Time(GetKey(doc, "paid_at"), &paid_at);
	payment_paid_k = Time(GetKey(pay, "paid_at"), &payment_paid);
	if (created_k != TIME_VALID || paid_k == TIME_OTHER || payment_paid_k == TIME_OTHER)
		PG_RETURN_NULL();

	/* Lines: goods and line discounts. */
	v = GetKey(doc, "lines");
	if (KindOf(v) != JK_ARRAY)
		PG_RETURN_NULL();
	lines_c = v->val.binary.data;
	nlines = JsonContainerSize(lines_c);
	if (nlines == 0)
		PG_RETURN_NULL();
	lines = palloc0(sizeof(LineIn) * nlines);
	for (int i = 0; i < nlines; i++)
	{
		LineIn	   *ln = &lines[i];
		JsonbValue *e = getIthJsonbValueFromContainer(lines_c, i);
		JsonbContainer *lo = ObjectOf(e);
		JsonbValue *q;
		bool		isnull;
		Datum		amount;

		if (lo == NULL
			|| !TextField(GetKey(lo, "sku"), &ln->sku)
			|| !TextField(GetKey(lo, "platform_sku"), &ln->psku)
			|| !TextField(GetKey(lo, "name"), &ln->name)
			|| (ln->sku == NULL && ln->psku == NULL))
			PG_RETURN_NULL();
		q = GetKey(lo, "qty");
		if (KindOf(q) != JK_NUMBER && KindOf(q) != JK_STRING)
			PG_RETURN_NULL();
		{
			char	   *t = Trim(ScalarText(q), " ");

			if (!AllDigits(t, strlen(t), 1, 9) || (ln->qty = atoi(t)) == 0)
				PG_RETURN_NULL();
		}
		ln->price = AmountOr(GetKey(lo, "unit_price"), &isnull, &valid);
		if (isnull || !valid)
			PG_RETURN_NULL();
		ln->discount = AmountOr(GetKey(lo, "discount"), &isnull, &valid);
		if (!valid)
			PG_RETURN_NULL();
		if (isnull)
			ln->discount = zero;
		amount = NumMul(ln->price, IntNumeric(ln->qty));
		if (NumCmp(ln->discount, amount) > 0)
			PG_RETURN_NULL();
		goods = NumAdd(goods, amount);
		line_disc = NumAdd(line_disc, ln->discount);
	}
	net = NumSub(goods, line_disc);

	/* Order discounts, on the goods net of line discounts. */
	v = GetKey(doc, "discounts");
	if (!AbsentOr(v, JK_ARRAY, JK_NULL))
		PG_RETURN_NULL();
	if (KindOf(v) == JK_ARRAY)
	{
		disc_c = v->val.binary.data;
		ndisc = JsonContainerSize(disc_c);
		discs = palloc0(sizeof(DiscountIn) * Max(ndisc, 1));
	}
	for (int i = 0; i < ndisc; i++)
	{
		DiscountIn *d = &discs[i];
		JsonbValue *e = getIthJsonbValueFromContainer(disc_c, i);
		JsonbContainer *dobj = ObjectOf(e);
		bool		amt_null = false,
					thr_null = false,
					pct_null = false;
		bool		amt_valid = true,
					thr_valid = true,
					pct_valid = true;
		Datum		amt_in,
					thr,
					pct;

		if (dobj == NULL
			|| !TextField(GetKey(dobj, "kind"), &d->kind)
			|| !TextField(GetKey(dobj, "code"), &d->code)
			|| !TextField(GetKey(dobj, "description"), &d->descr)
			|| !AbsentOr(GetKey(dobj, "per_step"), JK_BOOL, JK_BOOL)
			|| !AbsentOr(GetKey(dobj, "allocated"), JK_BOOL, JK_BOOL)
			|| d->kind == NULL)
			PG_RETURN_NULL();
		d->per_step = BoolOrFalse(GetKey(dobj, "per_step"));
		d->allocated = BoolOrFalse(GetKey(dobj, "allocated"));
		amt_in = AmountOr(GetKey(dobj, "amount"), &amt_null, &amt_valid);
		thr = AmountOr(GetKey(dobj, "threshold"), &thr_null, &thr_valid);
		pct = AmountOr(GetKey(dobj, "percent"), &pct_null, &pct_valid);

		if (strcmp(d->kind, "coupon") == 0 || strcmp(d->kind, "platform") == 0)
		{
			if (!amt_valid || amt_null)
				PG_RETURN_NULL();
			d->amount = amt_in;
		}
		else if (strcmp(d->kind, "threshold") == 0)
		{
			if (!amt_valid || amt_null || !thr_valid || thr_null || NumCmp(thr, zero) <= 0)
				PG_RETURN_NULL();
			d->threshold = thr;
			if (NumCmp(net, thr) < 0)
				d->amount = zero;
			else if (d->per_step)
				d->amount = NumMul(amt_in,
								   DirectFunctionCall1(numeric_floor,
													   DirectFunctionCall2(numeric_div, net, thr)));
			else
				d->amount = amt_in;
		}
		else if (strcmp(d->kind, "percent") == 0)
		{
			if (!pct_valid || pct_null || NumCmp(pct, IntNumeric(100)) > 0)
				PG_RETURN_NULL();
			d->percent = pct;
			d->amount = DirectFunctionCall2(numeric_round,
											DirectFunctionCall2(numeric_div, NumMul(net, pct),
																IntNumeric(100)),
											Int32GetDatum(2));
		}
		else
			PG_RETURN_NULL();
		if (!d->allocated)
			order_disc = NumAdd(order_disc, d->amount);
	}
	if (NumCmp(order_disc, net) > 0)
		PG_RETURN_NULL();

	/* Order amounts. */
	ship = AmountOr(GetKey(doc, "shipping_fee"), &ship_null, &valid);
	tax = AmountOr(GetKey(doc, "tax"), &tax_null, &valid);
	stated = AmountOr(GetKey(doc, "total"), &stated_null, &valid);
	pay_amt = AmountOr(GetKey(pay, "amount"), &pay_amt_null, &valid);
	if (!valid)
		PG_RETURN_NULL();
	if (ship_null)
		ship = zero;
	if (tax_null)
		tax = zero;
	computed = NumAdd(NumAdd(NumSub(net, order_disc), ship), tax);
	if (strcmp(status, "paid") == 0)
		paid_amount = !pay_amt_null ? pay_amt : !stated_null ? stated : computed;
	else if (strcmp(status, "pending_payment") == 0)
		paid_amount = zero;
	else
		paid_amount = !pay_amt_null ? pay_amt : zero;

	/*
	 * The normalized document.  Keys go in the order jsonb keeps them
	 * (shorter first, then bytewise), so that sorting them is a check.
	 */
	{
		char	   *c = IsoTime(created);

		created_iso = c;
		if (c == NULL)
			PG_RETURN_NULL();
	}
	if (paid_k == TIME_VALID && (paid_iso = IsoTime(paid_at)) == NULL)
		PG_RETURN_NULL();
	if (payment_paid_k == TIME_VALID && (payment_paid_iso = IsoTime(payment_paid)) == NULL)
		PG_RETURN_NULL();

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	PushNumeric(&st, "tax", tax, false);
	PushText(&st, "note", LeftChars(note, 2000));

	PushKey(&st, "buyer");
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	PushText(&st, "id", LeftChars(buyer_id, 200));
	PushText(&st, "name", LeftChars(buyer_name, 200));
	PushText(&st, "phone", LeftChars(buyer_phone, 64));
	pushJsonbValue(&st, WJB_END_OBJECT, NULL);

	PushKey(&st, "lines");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < nlines; i++)
	{
		LineIn	   *ln = &lines[i];

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		PushNumeric(&st, "qty", IntNumeric(ln->qty), false);
		PushText(&st, "sku", ln->sku);
		PushText(&st, "name", LeftChars(ln->name, 500));
		PushNumeric(&st, "line_no", IntNumeric(i + 1), false);
		PushNumeric(&st, "discount", ln->discount, false);
		PushNumeric(&st, "unit_price", ln->price, false);
		PushText(&st, "platform_sku", ln->psku);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);

	PushNumeric(&st, "total", stated_null ? computed : stated, false);
	PushText(&st, "status", status);
	PushText(&st, "paid_at", paid_iso);
	if (pay != NULL)
	{
		PushKey(&st, "payment");
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		PushNumeric(&st, "amount", pay_amt, pay_amt_null);
		PushText(&st, "method", LeftChars(pay_method, 64));
		PushText(&st, "paid_at", payment_paid_iso);
		PushText(&st, "transaction_id", LeftChars(pay_txn, 200));
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	PushText(&st, "currency", currency);
	PushText(&st, "order_no", order_no);

	PushKey(&st, "receiver");
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	PushText(&st, "city", LeftChars(recv_city, 200));
	PushText(&st, "name", LeftChars(recv_name, 200));
	PushText(&st, "phone", LeftChars(recv_phone, 64));
	PushText(&st, "address", LeftChars(recv_address, 1000));
	PushText(&st, "country", recv_country ? recv_country : "CN");
	PushText(&st, "district", LeftChars(recv_district, 200));
	PushText(&st, "postcode", LeftChars(recv_postcode, 32));
	PushText(&st, "province", LeftChars(recv_province, 200));
	pushJsonbValue(&st, WJB_END_OBJECT, NULL);

	PushKey(&st, "discounts");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < ndisc; i++)
	{
		DiscountIn *d = &discs[i];

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		PushText(&st, "code", LeftChars(d->code, 200));
		PushText(&st, "kind", d->kind);
		PushNumeric(&st, "amount", d->amount, false);
		PushNumeric(&st, "percent", d->percent, d->percent == (Datum) 0);
		PushBool(&st, "per_step", d->per_step);
		PushBool(&st, "allocated", d->allocated);
		PushNumeric(&st, "threshold", d->threshold, d->threshold == (Datum) 0);
		PushText(&st, "description", LeftChars(d->descr, 500));
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);

	PushText(&st, "created_at", created_iso);
	v = GetKey(doc, "allow_split");
	if (KindOf(v) == JK_BOOL)
		PushBool(&st, "allow_split", v->val.boolean);
	PushNumeric(&st, "paid_amount", paid_amount, false);
	PushText(&st, "seller_note", LeftChars(seller_note, 2000));
	PushNumeric(&st, "goods_amount", goods, false);
	PushText(&st, "platform_ref", LeftChars(platform_ref, 200));
	PushNumeric(&st, "shipping_fee", ship, false);
	PushNumeric(&st, "stated_total", stated, stated_null);
	PushNumeric(&st, "line_discount", line_disc, false);
	PushNumeric(&st, "computed_total", computed, false);
	PushNumeric(&st, "order_discount", order_disc, false);
	PushNumeric(&st, "discount_amount", NumAdd(line_disc, order_disc), false);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);

	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

/*
 * Fingerprints of a normalized document
 *
 * orderflow.intake_orders keeps two SHA-256 hashes of the document that
 * was applied to an order:
 *
 *	doc_hash	 = sha256(convert_to(n::text, 'UTF8'))
 *	content_hash = sha256(convert_to((n - ARRAY['status', 'paid_at',
 *											   'payment', 'paid_amount'])::text,
 *									 'UTF8'))
 *
 * intake_doc_hashes gives both from the jsonb, rendering each top-level
 * value once.  Removing keys from an object keeps the order of the others,
 * so the text of n without those keys is the text of n with their pairs
 * left out; each pair is rendered as jsonb's output function renders it.
 * A document that is not an object is passed to the functions of the SQL
 * definition, so the result is the same for every jsonb.
 */

/* The top-level keys content_hash leaves out (the payment status). */
static const char *const PaymentKeys[] = {"status", "paid_at", "payment", "paid_amount"};

static bool
IsPaymentKey(const char *key, int len)
{
	for (int i = 0; i < (int) lengthof(PaymentKeys); i++)
	{
		if (strlen(PaymentKeys[i]) == (size_t) len && memcmp(PaymentKeys[i], key, len) == 0)
			return true;
	}
	return false;
}

#if PG_VERSION_NUM >= 140000
typedef pg_cryptohash_ctx *Sha256Ctx;
#else
typedef pg_sha256_ctx *Sha256Ctx;
#endif

/*
 * A string as escape_json writes it, from its length (jsonb strings have no
 * NUL): runs of characters that need no escape are copied at once.
 */
static void
AppendEscaped(StringInfo out, const char *s, int len)
{
	int			run = 0;

	appendStringInfoCharMacro(out, '"');
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		const char *esc;

		if (c >= ' ' && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(out, s + run, i - run);
		run = i + 1;
		switch (c)
		{
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			default:
				appendStringInfo(out, "\\u%04x", (int) c);
				continue;
		}
		appendStringInfoString(out, esc);
	}
	appendBinaryStringInfo(out, s + run, len - run);
	appendStringInfoCharMacro(out, '"');
}

/* A scalar as jsonb's output function writes it. */
static void
AppendScalar(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendBinaryStringInfo(out, "null", 4);
			break;
		case jbvString:
			AppendEscaped(out, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			appendStringInfoString(out,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   PointerGetDatum(v->val.numeric))));
			break;
		case jbvBool:
			if (v->val.boolean)
				appendBinaryStringInfo(out, "true", 4);
			else
				appendBinaryStringInfo(out, "false", 5);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

/*
 * An object or array as jsonb's output function writes it (JsonbToCString
 * without indentation): ", " between members and elements, ": " after
 * keys.
 */
static void
AppendContainer(StringInfo out, JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = true;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_BEGIN_ARRAY:
				if (!first)
					appendBinaryStringInfo(out, ", ", 2);
				appendStringInfoCharMacro(out, tok == WJB_BEGIN_OBJECT ? '{' : '[');
				first = true;
				break;
			case WJB_KEY:
				if (!first)
					appendBinaryStringInfo(out, ", ", 2);
				AppendScalar(out, &v);
				appendBinaryStringInfo(out, ": ", 2);
				/* a container value follows with no separator */
				first = true;
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					appendBinaryStringInfo(out, ", ", 2);
				AppendScalar(out, &v);
				first = false;
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				appendStringInfoCharMacro(out, tok == WJB_END_OBJECT ? '}' : ']');
				first = false;
				break;
			case WJB_DONE:
				break;
		}
	}
}

/*
 * SHA-256 of text in the server encoding, taken as UTF-8 (convert_to), with
 * the context given (one is reused for both fingerprints).
 */
static bytea *
Sha256Utf8(Sha256Ctx ctx, const char *s, int len)
{
	char	   *u = pg_server_to_any(s, len, PG_UTF8);
	bytea	   *res = (bytea *) palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	uint8	   *dest = (uint8 *) VARDATA(res);

	if (u != s)
		len = strlen(u);
	SET_VARSIZE(res, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
#if PG_VERSION_NUM >= 140000
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) u, len) < 0 ||
#if PG_VERSION_NUM >= 150000
		pg_cryptohash_final(ctx, dest, PG_SHA256_DIGEST_LENGTH) < 0)
#else
		pg_cryptohash_final(ctx, dest) < 0)
#endif
		elog(ERROR, "could not compute SHA-256 hash");
#else
	pg_sha256_init(ctx);
	pg_sha256_update(ctx, (const uint8 *) u, len);
	pg_sha256_final(ctx, dest);
#endif
	return res;
}

PG_FUNCTION_INFO_V1(orderflow_intake_doc_hashes);

/*
 * orderflow.intake_doc_hashes(n jsonb, OUT doc_hash bytea,
 *							   OUT content_hash bytea)
 */
Datum
orderflow_intake_doc_hashes(PG_FUNCTION_ARGS)
{
	Jsonb	   *n = PG_GETARG_JSONB_P(0);
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	StringInfoData doc;
	StringInfoData content;
#if PG_VERSION_NUM >= 140000
	Sha256Ctx	ctx;
#else
	pg_sha256_ctx ctxdata;
	Sha256Ctx	ctx = &ctxdata;
#endif

	/* The result's descriptor, built once per FmgrInfo (executor node). */
	desc = (TupleDesc) fcinfo->flinfo->fn_extra;
	if (desc == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		desc = BlessTupleDesc(desc);
		MemoryContextSwitchTo(oldcxt);
		fcinfo->flinfo->fn_extra = desc;
	}

	initStringInfo(&doc);
	initStringInfo(&content);
	if (JB_ROOT_IS_OBJECT(n))
	{
		JsonbIterator *it = JsonbIteratorInit(&n->root);
		JsonbValue	k;
		JsonbValue	v;
		JsonbIteratorToken tok;
		bool		first = true;
		bool		first_content = true;

		(void) JsonbIteratorNext(&it, &k, false);	/* WJB_BEGIN_OBJECT */
		appendStringInfoChar(&doc, '{');
		appendStringInfoChar(&content, '{');
		while ((tok = JsonbIteratorNext(&it, &k, true)) == WJB_KEY)
		{
			int			start;
			bool		keep;

			tok = JsonbIteratorNext(&it, &v, true);
			Assert(tok == WJB_VALUE);
			if (!first)
				appendBinaryStringInfo(&doc, ", ", 2);
			first = false;
			start = doc.len;
			AppendScalar(&doc, &k);
			appendBinaryStringInfo(&doc, ": ", 2);
			if (v.type == jbvBinary)
				AppendContainer(&doc, v.val.binary.data);
			else
				AppendScalar(&doc, &v);

			keep = !IsPaymentKey(k.val.string.val, k.val.string.len);
			if (keep)
			{
				if (!first_content)
					appendBinaryStringInfo(&content, ", ", 2);
				first_content = false;
				appendBinaryStringInfo(&content, doc.data + start, doc.len - start);
			}
		}
		appendStringInfoChar(&doc, '}');
		appendStringInfoChar(&content, '}');
	}
	else
	{
		Datum		keys[lengthof(PaymentKeys)];
		Jsonb	   *rest;

		(void) JsonbToCString(&doc, &n->root, VARSIZE(n));
		for (int i = 0; i < (int) lengthof(PaymentKeys); i++)
			keys[i] = CStringGetTextDatum(PaymentKeys[i]);
		rest = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete_array, JsonbPGetDatum(n),
												  PointerGetDatum(construct_array(keys, lengthof(PaymentKeys),
																				  TEXTOID, -1, false,
																				  TYPALIGN_INT))));
		(void) JsonbToCString(&content, &rest->root, VARSIZE(rest));
	}

#if PG_VERSION_NUM >= 140000
	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL)
		elog(ERROR, "could not compute SHA-256 hash");
#endif
	values[0] = PointerGetDatum(Sha256Utf8(ctx, doc.data, doc.len));
	values[1] = PointerGetDatum(Sha256Utf8(ctx, content.data, content.len));
#if PG_VERSION_NUM >= 140000
	pg_cryptohash_free(ctx);
#endif
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
