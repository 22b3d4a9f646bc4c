//! SQL functions Strata changes: `now()` (alias `current_timestamp`) reads the engine's
//! injected clock, so time-dependent SQL (alert rules, retention checks in tests) sees the
//! same time as persistence and retention. With the system clock it behaves exactly like
//! DataFusion's: one value per statement, folded into a literal at planning.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use strata_engine::clock::Clock;

#[derive(Debug)]
pub struct ClockNow {
    clock: Arc<dyn Clock>,
    signature: Signature,
    aliases: Vec<String>,
    timezone: Option<Arc<str>>,
}

impl ClockNow {
    pub fn udf(clock: Arc<dyn Clock>, timezone: Option<&str>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            clock,
            signature: Signature::nullary(Volatility::Stable),
            aliases: vec!["current_timestamp".to_string()],
            timezone: timezone.map(Arc::from),
        })
    }
}

impl PartialEq for ClockNow {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.clock, &other.clock) && self.timezone == other.timezone
    }
}

impl Eq for ClockNow {}

impl Hash for ClockNow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "now".hash(state);
        self.timezone.hash(state);
    }
}

impl ScalarUDFImpl for ClockNow {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Timestamp(TimeUnit::Nanosecond, self.timezone.clone()),
            false,
        )))
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        internal_err!("return_field_from_args is used instead")
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.now()))
    }

    fn simplify(&self, _args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(
            self.now(),
            None,
        )))
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }
}

impl ClockNow {
    fn now(&self) -> ScalarValue {
        ScalarValue::TimestampNanosecond(Some(self.clock.now_ns()), self.timezone.clone())
    }
}
