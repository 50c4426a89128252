use super::*;

const TRABAJOS: &str = include_str!("../../../tests/fixtures/trabajos.txt");
const TAREAS: &str = include_str!("../../../tests/fixtures/tareas_manuales_ejemplo.json");

fn error(text: &str) -> String {
    match parse(text.as_bytes()) {
        Ok(batch) => panic!("accepted a malformed file: {batch:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn the_csv_example_is_three_julia_renders_two_of_them_high() {
    let batch = parse(TRABAJOS.as_bytes()).unwrap();
    assert_eq!(batch.tasks.len(), 3);
    assert!(batch.tasks.iter().all(|t| t.kind == "julia"));
    let high = batch
        .tasks
        .iter()
        .filter(|t| t.priority == Priority::High)
        .count();
    assert_eq!(high, 2);
    assert_eq!(batch.tasks[1].priority, Priority::Medium);
    assert_eq!(batch.tasks[0].submission["width"], 800);
    assert_eq!(batch.tasks[0].submission["height"], 600);
    assert_eq!(batch.tasks[0].submission["iterations"], 100);
    assert_eq!(batch.tasks[2].algorithm, "juliaCython");
    assert_eq!(batch.tasks[0].location, "line 5");
}

#[test]
fn csv_ids_follow_the_file_and_the_row() {
    let again = parse(TRABAJOS.as_bytes()).unwrap();
    let first = parse(TRABAJOS.as_bytes()).unwrap();
    assert_eq!(first, again);
    assert_eq!(first.tasks[0].task_id, csv_task_id(TRABAJOS.as_bytes(), 5));
    let edited = TRABAJOS.replace("Numpy,1000", "Numpy,1001");
    let other = parse(edited.as_bytes()).unwrap();
    assert_ne!(other.tasks[0].task_id, first.tasks[0].task_id);
    assert!(first.tasks.iter().all(|t| valid_job_id(&t.task_id)));
}

#[test]
fn csv_takes_an_english_header_in_any_order_and_no_header() {
    let english = "priority,algorithm,width,height,iterations\nlow,julia,10,8,50\n";
    let batch = parse(english.as_bytes()).unwrap();
    assert_eq!(batch.tasks[0].priority, Priority::Low);
    assert_eq!(batch.tasks[0].submission["height"], 8);
    let bare = "Numpy,10,8,50,3\n";
    assert_eq!(
        parse(bare.as_bytes()).unwrap().tasks[0].priority,
        Priority::Low
    );
}

#[test]
fn the_json_example_is_two_particle_simulations() {
    let batch = parse(TAREAS.as_bytes()).unwrap();
    assert_eq!(batch.tasks.len(), 2);
    let first = &batch.tasks[0];
    assert_eq!(first.task_id, "task_001");
    assert_eq!(first.kind, "particles");
    assert_eq!(first.algorithm, "python");
    assert_eq!(first.priority, Priority::High);
    assert_eq!(first.submission["particles"], 100);
    assert_eq!(first.submission["steps"], 500);
    assert_eq!(first.submission["seed"], 123);
    assert_eq!(
        first.description.as_deref(),
        Some("Simulación Python - 100 partículas")
    );
    assert_eq!(batch.tasks[1].priority, Priority::Medium);
    assert_eq!(batch.tasks[1].algorithm, "cython");
    assert!(batch.metadata.is_some());
}

#[test]
fn json_search_tasks_name_their_sequence_file() {
    let text = r#"{"tasks":[{"task_id":"s1","algorithm":"search","priority":"low",
        "parameters":{"patterns":["ACGT","GGN"],"fasta":"genomes/g.fa","strand":"both"}}]}"#;
    let batch = parse(text.as_bytes()).unwrap();
    let task = &batch.tasks[0];
    assert_eq!(task.kind, "search");
    assert_eq!(
        task.upload.as_deref(),
        Some(std::path::Path::new("genomes/g.fa"))
    );
    assert_eq!(task.submission["filename"], "g.fa");
    assert_eq!(task.submission["options"]["strand"], "both");
    assert!(task.submission["options"].get("max_mismatches").is_none());
}

#[test]
fn json_search_tasks_take_max_mismatches_checked_against_pattern_length() {
    let task = |k: &str| {
        format!(
            r#"{{"tasks":[{{"task_id":"s1","algorithm":"search","priority":"low",
            "parameters":{{"patterns":["ACGTACGT"],"fasta":"g.fa","max_mismatches":{k}}}}}]}}"#
        )
    };
    let batch = parse(task("2").as_bytes()).unwrap();
    assert_eq!(batch.tasks[0].submission["options"]["max_mismatches"], 2);
    let refused = error(&task("4"));
    assert!(refused.contains("every position would match"), "{refused}");
    assert!(error(&task("-1")).contains("max_mismatches"));
}

#[test]
fn a_bad_number_names_the_line_and_column() {
    let text = "algoritmo,width,height,iteraciones,prioridad\nNumpy,8x0,600,100,1\n";
    assert_eq!(
        error(text),
        "line 2, field \"width\": \"8x0\" is not a whole number"
    );
    let json = r#"{"tasks":[{"task_id":"t","algorithm":"python","priority":"high",
        "parameters":{"num_particles":-4,"num_steps":5,"seed":1}}]}"#;
    assert_eq!(
        error(json),
        "tasks[0].parameters, field \"num_particles\": -4 is not a whole number"
    );
}

#[test]
fn an_unknown_algorithm_is_named() {
    let text = "Fortran,800,600,100,1\n";
    assert!(error(text).starts_with("line 1, field \"algoritmo\": unknown algorithm \"Fortran\""));
    let json = r#"{"tasks":[{"task_id":"t","algorithm":"rust","parameters":{}}]}"#;
    assert!(error(json).starts_with("tasks[0], field \"algorithm\": unknown algorithm \"rust\""));
}

#[test]
fn a_missing_field_is_named() {
    let json = r#"{"tasks":[{"task_id":"t","algorithm":"cython","priority":"low",
        "parameters":{"num_particles":10,"seed":1}}]}"#;
    assert_eq!(
        error(json),
        "tasks[0].parameters, field \"num_steps\": missing"
    );
    let no_id = r#"{"tasks":[{"algorithm":"cython","parameters":{}}]}"#;
    assert_eq!(error(no_id), "tasks[0], field \"task_id\": missing");
    assert_eq!(
        error(r#"{"metadata":{}}"#),
        "$, field \"tasks\": missing; a batch file holds a \"tasks\" list"
    );
}

#[test]
fn an_unknown_priority_is_named() {
    assert!(error("Numpy,10,10,10,4\n")
        .starts_with("line 1, field \"prioridad\": unknown priority \"4\""));
    let json = r#"{"tasks":[{"task_id":"t","algorithm":"python","priority":"urgent",
        "parameters":{"num_particles":10,"num_steps":5,"seed":1}}]}"#;
    assert!(error(json).starts_with("tasks[0], field \"priority\": unknown priority \"urgent\""));
}

#[test]
fn truncated_json_names_where_it_stops() {
    let cut = &TAREAS[..TAREAS.len() / 2];
    let message = error(cut);
    assert!(message.starts_with("JSON line "), "{message}");
    assert!(message.contains("is the file complete?"), "{message}");
}

#[test]
fn a_row_with_too_few_columns_is_refused() {
    let text = "algoritmo,width,height,iteraciones,prioridad\nNumpy,1000,800\n";
    assert_eq!(
        error(text),
        "line 2: 3 columns, expected 5 (algoritmo,width,height,iteraciones,prioridad)"
    );
}

#[test]
fn an_empty_file_is_refused() {
    assert_eq!(error(""), "file: the file is empty: no tasks to load");
    assert_eq!(error("  \n\n"), "file: the file is empty: no tasks to load");
    assert_eq!(
        error("# only a comment\nalgoritmo,width,height,iteraciones,prioridad\n"),
        "file: the file holds no tasks"
    );
    assert_eq!(error(r#"{"tasks":[]}"#), "file: the file holds no tasks");
}

#[test]
fn duplicate_task_ids_are_refused() {
    let json = r#"{"tasks":[
        {"task_id":"t","algorithm":"python","parameters":{"num_particles":10,"num_steps":5,"seed":1}},
        {"task_id":"t","algorithm":"python","parameters":{"num_particles":10,"num_steps":5,"seed":2}}]}"#;
    assert!(
        error(json).starts_with("tasks[1], field \"task_id\": \"t\" is used by an earlier task")
    );
}

#[test]
fn kernel_limits_are_checked_before_loading() {
    let message = error("Numpy,0,10,10,1\n");
    assert!(message.starts_with("line 1: "), "{message}");
    let json = r#"{"tasks":[{"task_id":"t","algorithm":"python",
        "parameters":{"num_particles":0,"num_steps":5,"seed":1}}]}"#;
    assert!(error(json).starts_with("tasks[0].parameters: "));
}

#[test]
fn job_meta_rides_in_the_spec_without_disturbing_it() {
    let mut spec = serde_json::json!({ "width": 4 });
    let meta = JobMeta {
        priority: Priority::Low,
        description: Some("d".into()),
        ..JobMeta::default()
    };
    meta.attach(&mut spec);
    assert_eq!(spec["width"], 4);
    assert_eq!(JobMeta::of(&spec), Some(meta));
    assert_eq!(JobMeta::of(&serde_json::json!({})), None);
}

#[test]
fn a_batch_job_id_is_held_to_the_master_s_length_limit() {
    // A 101-character id would pass here and then be refused (or name an over-long file) later.
    assert!(valid_job_id(&"a".repeat(100)));
    assert!(!valid_job_id(&"a".repeat(101)));
    assert!(!valid_job_id(""));
    assert!(!valid_job_id("a/b"));
}

#[test]
fn parsing_stops_at_the_first_task_past_the_cap() {
    let csv = "Secuencial,8,8,5,1\n".repeat(5);
    assert_eq!(parse_limited(csv.as_bytes(), 5).unwrap().tasks.len(), 5);
    let err = parse_limited(csv.as_bytes(), 3).unwrap_err();
    assert_eq!(err.location, "line 4");
    assert!(err.message.contains("--max-batch-tasks"), "{err}");

    let task = |i: usize| {
        format!(
            r#"{{"task_id":"t{i}","algorithm":"python","parameters":{{"num_particles":4,"num_steps":4,"seed":{i}}}}}"#
        )
    };
    let tasks: Vec<String> = (0..5).map(task).collect();
    // Everything after the cap is garbage: reading must stop before it.
    let json = format!(r#"{{"tasks":[{}, not json at all"#, tasks.join(","));
    let err = parse_limited(json.as_bytes(), 3).unwrap_err();
    assert_eq!(err.location, "tasks[3]");
    assert!(err.message.contains("more than 3 tasks"), "{err}");
}

#[test]
fn values_quoted_in_errors_are_bounded() {
    let secret = "X".repeat(10_000);
    let csv = format!("{secret},8,8,5,1\n");
    let err = parse(csv.as_bytes()).unwrap_err().to_string();
    assert!(err.len() < 400, "{} bytes", err.len());
    let json =
        format!(r#"{{"tasks":[{{"task_id":"a","algorithm":"{secret}","parameters":{{}}}}]}}"#);
    let err = parse(json.as_bytes()).unwrap_err().to_string();
    assert!(err.len() < 400, "{} bytes", err.len());
}
