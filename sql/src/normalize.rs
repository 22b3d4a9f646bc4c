//! The one output normalisation of the wire frontends (Flight SQL, PostgreSQL wire):
//! strict clients (JDBC, Grafana's FlightSQL plugin, ADBC) know a small set of Arrow types
//! and compare the advertised schema with every batch they receive. Both go through here,
//! so they always agree:
//!
//! - `Utf8View`/`LargeUtf8` → `Utf8`, `BinaryView`/`LargeBinary` → `Binary`;
//! - dictionaries (our tags) → their values;
//! - timestamps of any unit → `Timestamp(Nanosecond)`, time zone kept;
//! - list views and large lists → `List`, recursively through lists and structs;
//! - every field nullable (a plan may know a column has no nulls, a later batch of the
//!   same query cannot promise it: clients reject a schema that changes).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

/// The type clients receive for `dt`.
pub fn data_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, values) => data_type(values),
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => DataType::List(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect::<Fields>()),
        other => other.clone(),
    }
}

fn field(f: &FieldRef) -> FieldRef {
    Arc::new(
        f.as_ref()
            .clone()
            .with_data_type(data_type(f.data_type()))
            .with_nullable(true),
    )
}

/// The schema clients receive for `schema` (metadata kept).
pub fn schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| field(f).as_ref().clone())
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Casts `batch` to `target`, a schema made by [`schema`] from the batch's own schema.
pub fn batch(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.num_columns() != target.fields().len() {
        return Err(ArrowError::SchemaError(format!(
            "result batch has {} columns, the advertised schema {}",
            batch.num_columns(),
            target.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(col, f)| {
            if col.data_type() == f.data_type() {
                Ok(Arc::clone(col))
            } else {
                cast(col, f.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(target),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, DictionaryArray, Int64Array, StringViewArray, TimestampSecondArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn schema_and_batches_agree() {
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let input = Arc::new(Schema::new(vec![
            Field::new("host", dict.data_type().clone(), false),
            Field::new("name", DataType::Utf8View, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("v", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            Arc::clone(&input),
            vec![
                Arc::new(dict),
                Arc::new(StringViewArray::from(vec!["x", "y", "z"])),
                Arc::new(TimestampSecondArray::from(vec![1, 2, 3])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .expect("batch");
        let out_schema = schema(&input);
        let types: Vec<DataType> = out_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![
                DataType::Utf8,
                DataType::Utf8,
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                DataType::Int64
            ]
        );
        assert!(out_schema.fields().iter().all(|f| f.is_nullable()));
        let out = batch(&b, &out_schema).expect("normalised");
        assert_eq!(out.schema(), out_schema);
        let t = out
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::TimestampNanosecondArray>()
            .expect("ns timestamps");
        assert_eq!(t.value(1), 2_000_000_000);
    }

    #[test]
    fn nested_types_are_normalised() {
        let inner = Arc::new(Field::new("item", DataType::LargeUtf8, false));
        let dt = DataType::LargeList(inner);
        assert_eq!(
            data_type(&dt),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
    }
}
